"""`evaluate`: score a folder-per-class set of scans with the serving preprocessing.

When the folder holds a `manifest.csv` naming each file's sequence (the external set,
training/external.py), the report also breaks the figures down per sequence, per patient group
and by skull stripping, with the OOD gate's rejections (a rejected slice gets no tumour label, so
it counts as a miss), and draws a reliability diagram per sequence; `part` limits it to one side
of the external split (`val`: the part only measured on).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mri.card import DEFAULT_MODEL_DIR
from mri.model.ood import load_gate
from mri.model.probabilities import calibrated_probabilities
from mri.model.store import load_classifier
from mri.vocabulary import CLASS_NAMES
from training.data import list_samples
from training.external import (
    EXTERNAL_SPLIT_FILE,
    MANIFEST,
    breakdown,
    load_external_split,
    read_manifest,
    rows_for_keys,
)
from training.metrics import expected_calibration_error, reliability_bins, summarize
from training.plots import plot_confusion, plot_reliability
from training.scoring import scan_logits


def evaluate(
    data_dir: Path,
    out_dir: Path,
    model_dir: Path = DEFAULT_MODEL_DIR,
    progress: bool = True,
    split_file: Path | None = None,
    part: str | None = None,
) -> dict:
    """Write metrics.json, predictions.csv, confusion_matrix.png, reliability.png; return metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (Path(data_dir) / MANIFEST).exists():
        return evaluate_by_sequence(Path(data_dir), out_dir, Path(model_dir), split_file, part)
    if part:
        raise SystemExit(f"--part needs a data folder with a {MANIFEST} (the external set)")
    model, card = load_classifier(model_dir)
    samples = list_samples(Path(data_dir))
    true = np.array([s.label for s in samples])
    logits = scan_logits(
        model, [s.path for s in samples], card.input_size, progress=progress, head_crop=card.head_crop
    )
    probabilities = calibrated_probabilities(logits, card.temperature)
    metrics = summarize(probabilities, true, CLASS_NAMES)
    metrics.update(
        {"model_version": card.version, "temperature": card.temperature, "data": str(data_dir)}
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_predictions(
        out_dir / "predictions.csv", [str(s.path.relative_to(data_dir)) for s in samples], true, probabilities
    )
    plot_confusion(np.array(metrics["confusion_matrix"]), CLASS_NAMES, out_dir / "confusion_matrix.png")
    plot_reliability(probabilities, true, out_dir / "reliability.png", metrics["ece_15"])
    return metrics


def write_predictions(
    path: Path,
    files: list[str],
    true: np.ndarray,
    probabilities: np.ndarray,
    ood_scores: np.ndarray | None = None,
    rejected: np.ndarray | None = None,
) -> None:
    gated = ood_scores is not None and rejected is not None
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        extra = ["ood_score", "rejected"] if gated else []
        writer.writerow(["file", "true", "predicted", *[f"p_{name}" for name in CLASS_NAMES], *extra])
        for i, (name, label, row) in enumerate(zip(files, true, probabilities, strict=True)):
            tail = [f"{ood_scores[i]:.4f}", int(rejected[i])] if gated else []
            writer.writerow(
                [name, CLASS_NAMES[label], CLASS_NAMES[int(row.argmax())], *[f"{p:.6f}" for p in row], *tail]
            )


def evaluate_by_sequence(
    data_dir: Path, out_dir: Path, model_dir: Path, split_file: Path | None = None, part: str | None = None
) -> dict:
    """The external set (or one part of its patient-group split), per sequence: see the module
    docstring. Features are cached per model version (training.ood_features), so the other
    commands that score these slices (explain-eval, the sequence probe) reuse the pass."""
    from training.ood_features import cached_file_features, feature_model

    rows = read_manifest(data_dir)
    if part:
        split = load_external_split(split_file or EXTERNAL_SPLIT_FILE)
        rows = rows_for_keys(data_dir, split[part])
    model, card = load_classifier(model_dir)
    found = cached_file_features(
        feature_model(model),
        card.version,
        card.input_size,
        [data_dir / r.key for r in rows],
        "external",
        head_crop=card.head_crop,
    )
    probabilities = calibrated_probabilities(found["logits"], card.temperature)
    gate = load_gate(model_dir, card)
    scores = gate.scorer.scores(found[gate.input_name]) if gate else np.full(len(rows), np.nan)
    rejected = np.asarray([gate.is_out_of_distribution(s) for s in scores]) if gate else np.zeros(len(rows), bool)
    true = np.array([CLASS_NAMES.index(r.label) for r in rows])
    metrics = summarize(probabilities, true, CLASS_NAMES)
    metrics.update(
        {
            "model_version": card.version,
            "temperature": card.temperature,
            "data": str(data_dir),
            "part": part or "all",
            "patient_groups": sorted({r.patient_group for r in rows}),
            "ood_threshold": gate.threshold if gate else None,
            "per_sequence": breakdown(rows, probabilities, rejected, "sequence"),
            "per_patient_group": breakdown(rows, probabilities, rejected, "patient_group"),
            "per_skull_stripped": breakdown(rows, probabilities, rejected, "skull_stripped"),
            "reliability_per_sequence": {
                sequence: reliability_bins(probabilities[members], true[members], 10)
                for sequence in sorted({r.sequence for r in rows})
                for members in [np.array([r.sequence == sequence for r in rows])]
            },
            "note": (
                "sensitivity/specificity count a slice the OOD gate rejects as a failure; ECE is of the "
                "top-1 class over the 4 classes; reliability_per_sequence uses 10 bins"
            ),
        }
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_predictions(out_dir / "predictions.csv", [r.key for r in rows], true, probabilities, scores, rejected)
    plot_confusion(np.array(metrics["confusion_matrix"]), CLASS_NAMES, out_dir / "confusion_matrix.png")
    plot_reliability(probabilities, true, out_dir / "reliability.png", metrics["ece_15"])
    for sequence in sorted({r.sequence for r in rows}):
        members = np.array([r.sequence == sequence for r in rows])
        plot_reliability(
            probabilities[members],
            true[members],
            out_dir / f"reliability-{sequence}.png",
            expected_calibration_error(probabilities[members], true[members], 15),
        )
    return metrics
