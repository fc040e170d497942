"""`sequence-probe`: which MRI sequence the training scans are, estimated honestly.

The training merge names no sequence. A small classifier (standardised logistic regression)
on the shipped model's pooled block14 features (the ones the runtime's forward pass already
computes) learns the sequence from the external set's manifest labels, on the train part of
its patient-group split only; its accuracy is measured on the held-out patient groups. Applied
to the training data's validation split (a stratified fifth of the training merge), it gives
an estimated sequence breakdown per class.

Known bias: 584 of the 600 external slices are skull-stripped and windowed alike, the training
merge shows the skull. The probe may read "skull present" as a sequence cue; the report gives
its accuracy on the few external slices with a skull (T1 post-contrast only) and says so.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from mri.vocabulary import CLASS_NAMES
from training.data import DEFAULT_DATA, load_split, samples_from_keys
from training.external import (
    EXTERNAL_DATA,
    EXTERNAL_SPLIT_FILE,
    SEQUENCE_NAMES,
    load_external_split,
    rows_for_keys,
)

FEATURES = "pool"  # block14_sepconv2_act, spatially averaged (training.ood_features)
SEQUENCES = tuple(SEQUENCE_NAMES)  # flair, t2, t1, t1c


def fit_probe(features: np.ndarray, sequences: list[str], c: float = 0.1):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray([SEQUENCES.index(s) for s in sequences])
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced"))
    return probe.fit(features, labels)


def _features(model_dir: Path, paths: list[Path], store: str) -> np.ndarray:
    from mri.model.store import load_classifier
    from training.ood_features import cached_file_features, feature_model

    model, card = load_classifier(model_dir)
    found = cached_file_features(
        feature_model(model), card.version, card.input_size, paths, store, head_crop=card.head_crop
    )
    return found[FEATURES]


def sequence_probe(model_dir: Path, data: Path = DEFAULT_DATA, external: Path = EXTERNAL_DATA) -> dict:
    split = load_external_split(EXTERNAL_SPLIT_FILE)
    parts = {part: rows_for_keys(external, split[part]) for part in ("train", "val")}
    features = {
        part: _features(model_dir, [external / r.key for r in rows], "external") for part, rows in parts.items()
    }
    probe = fit_probe(features["train"], [r.sequence for r in parts["train"]])
    predicted = probe.predict(features["val"])
    true = np.asarray([SEQUENCES.index(r.sequence) for r in parts["val"]])
    skull = np.asarray([not r.skull_stripped for r in parts["val"]])
    confusion = np.zeros((len(SEQUENCES), len(SEQUENCES)), dtype=int)
    np.add.at(confusion, (true, predicted), 1)

    samples = samples_from_keys(data, load_split()["val"])
    estimated = probe.predict(_features(model_dir, [s.path for s in samples], "scans-val"))
    # The labelled subset: scans matched to figshare (tumor-boxes.csv), known T1 post-contrast.
    from training.localization import read_boxes

    figshare = set(read_boxes(Path(data).parent / "tumor-boxes.csv"))
    known = np.asarray([s.key in figshare for s in samples])
    t1c = SEQUENCES.index("t1c")
    known_t1c = {
        CLASS_NAMES[label]: {
            "n": int((known & is_label).sum()),
            "called_t1c": int(((estimated == t1c) & known & is_label).sum()),
        }
        for label in range(len(CLASS_NAMES))
        for is_label in [np.asarray([s.label == label for s in samples])]
        if (known & is_label).any()
    }
    breakdown = {
        CLASS_NAMES[label]: {
            SEQUENCE_NAMES[SEQUENCES[k]]: n
            for k, n in sorted(Counter(estimated[[s.label == label for s in samples]].tolist()).items())
        }
        for label in range(len(CLASS_NAMES))
    }
    return {
        "probe": f"standardised logistic regression (C=0.1, balanced) on the pooled {FEATURES} features",
        "trained_on": f"external set, train part ({len(parts['train'])} slices, groups {split['train_groups']})",
        "held_out": {
            "groups": split["val_groups"],
            "n": len(true),
            "accuracy": round(float((predicted == true).mean()), 4),
            "per_sequence_recall": {
                SEQUENCE_NAMES[s]: round(float(confusion[i, i] / confusion[i].sum()), 4)
                for i, s in enumerate(SEQUENCES)
                if confusion[i].sum()
            },
            "confusion_rows_true_cols_predicted": {"order": list(SEQUENCES), "matrix": confusion.tolist()},
            "with_skull": {
                "n": int(skull.sum()),
                "accuracy": round(float((predicted[skull] == true[skull]).mean()), 4) if skull.any() else None,
            },
        },
        "known_t1c_check": {
            "scans": "validation scans matched to figshare (tumor-boxes.csv): T1 post-contrast by provenance",
            "per_class": known_t1c,
            "accuracy": round(float((estimated[known] == t1c).mean()), 4) if known.any() else None,
        },
        "training_data_estimate": {
            "scans": f"validation split of the training merge ({len(samples)} scans, a stratified fifth)",
            "per_class": breakdown,
        },
        "bias": (
            "external slices are skull-stripped (584 of 600), the training merge is not: the probe's "
            "estimate on training scans may confuse skull/no skull with sequence; figshare tumour slices are "
            "known to be T1 post-contrast (data README), which checks the estimate"
        ),
    }


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sequence-probe", help="estimate the training data's sequences with a probe trained on the external set"
    )
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--external", type=Path, default=EXTERNAL_DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mri.card import DEFAULT_MODEL_DIR

    report = sequence_probe(args.model or DEFAULT_MODEL_DIR, args.data, args.external)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sequence_probe.json").write_text(json.dumps(report, indent=2) + "\n")
    held = report["held_out"]
    print(f"held-out patient groups: accuracy {held['accuracy']} (n={held['n']}), {held['per_sequence_recall']}")
    print(f"with a skull: {held['with_skull']}")
    print(f"known T1c (figshare) validation scans called T1c: {report['known_t1c_check']}")
    for name, row in report["training_data_estimate"]["per_class"].items():
        print(f"{name:>10}: {row}")
    return 0
