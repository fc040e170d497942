"""`ood colour-evidence`: what the colour evidence (mri/intake/colour_evidence.py) adds to the
gate, per family: real brain MRI kept (the external set, the training scans) and non-MRI
images rejected (the development and held-out OOD corpus, training/ood_corpus.py), by the
upload check, the model's Mahalanobis gate, the colour evidence, and all of them together.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from mri.intake.colour_evidence import CHROMA_LEVEL, MAX_COLOURED_SHARE, coloured_share
from training.data import DEFAULT_DATA, list_samples
from training.external import EXTERNAL_DATA, read_manifest


def _rate(flags: np.ndarray) -> dict:
    return {
        "n": len(flags),
        "rejected": int(flags.sum()),
        "rate": round(float(flags.mean()), 4) if len(flags) else None,
    }


def colour_evidence_report(model_dir: Path, data: Path = DEFAULT_DATA, external: Path = EXTERNAL_DATA) -> dict:
    from mri.model.ood import load_gate
    from mri.model.store import load_classifier
    from training.ood_corpus import corpus_features
    from training.ood_features import cached_file_features, feature_model

    model, card = load_classifier(model_dir)
    gate = load_gate(model_dir, card)
    features = feature_model(model)
    report: dict = {
        "rule": f"rejected when more than {MAX_COLOURED_SHARE:.0%} of pixels have chroma (max-min of RGB) > "
        f"{CHROMA_LEVEL}",
        "model_version": card.version,
        "ood_threshold": gate.threshold if gate else None,
    }
    # Real brain MRI from outside the training merge: the false rejections.
    rows = read_manifest(external)
    paths = [external / r.key for r in rows]
    colour = np.asarray([coloured_share(p.read_bytes()) > MAX_COLOURED_SHARE for p in paths])
    found = cached_file_features(
        features, card.version, card.input_size, paths, "external", head_crop=card.head_crop
    )
    scored = ~(gate.scorer.scores(found[gate.input_name]) <= gate.threshold) if gate else np.zeros(len(rows), bool)
    report["external_mri"] = {
        "colour": _rate(colour),
        "gate": _rate(scored),
        "together": _rate(colour | scored),
        "per_sequence_together": {
            s: _rate((colour | scored)[[r.sequence == s for r in rows]]) for s in sorted({r.sequence for r in rows})
        },
    }
    training = [s.path for s in list_samples(data)]
    report["training_scans_colour"] = _rate(
        np.asarray([coloured_share(p.read_bytes()) > MAX_COLOURED_SHARE for p in training])
    )
    # Non-MRI images, per family.
    corpus, corpus_found, refused = corpus_features(features, card)
    colour = np.asarray([coloured_share(i.data) > MAX_COLOURED_SHARE for i in corpus])
    scored = (
        ~(gate.scorer.scores(corpus_found[gate.input_name]) <= gate.threshold) if gate else np.zeros(len(corpus), bool)
    )
    families = {}
    for family in sorted({i.family for i in corpus}):
        members = np.asarray([i.family == family for i in corpus])
        families[family] = {
            "held_out": corpus[int(np.argmax(members))].held_out,
            "upload_check": _rate(refused[members]),
            "gate": _rate(scored[members] & ~refused[members]),
            "colour": _rate(colour[members]),
            "gate_and_upload_check": _rate((scored | refused)[members]),
            "all_together": _rate((scored | refused | colour)[members]),
        }
    report["non_mri_per_family"] = families
    for name, held in (("development", False), ("held_out", True)):
        members = np.asarray([i.held_out == held for i in corpus])
        report[f"non_mri_{name}"] = {
            "without_colour": _rate((scored | refused)[members]),
            "with_colour": _rate((scored | refused | colour)[members]),
        }
    report["corpus_keys_sha256"] = hashlib.sha256("".join(i.name for i in corpus).encode()).hexdigest()[:16]
    return report


def run(args: argparse.Namespace) -> int:
    report = colour_evidence_report(args.model, args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "colour_evidence.json").write_text(json.dumps(report, indent=2) + "\n")
    mri = report["external_mri"]
    print(
        f"external MRI rejected: colour {mri['colour']['rejected']}/{mri['colour']['n']}, gate "
        f"{mri['gate']['rejected']}, together {mri['together']['rate']}; training scans by colour: "
        f"{report['training_scans_colour']['rejected']}/{report['training_scans_colour']['n']}"
    )
    for family, row in report["non_mri_per_family"].items():
        print(
            f"{family:>16}{' (held out)' if row['held_out'] else '':11}: "
            f"upload check {row['upload_check']['rejected']}, "
            f"gate {row['gate']['rejected']}, colour {row['colour']['rejected']}, all {row['all_together']['rejected']}"
            f"/{row['all_together']['n']}"
        )
    for name in ("development", "held_out"):
        row = report[f"non_mri_{name}"]
        print(f"non-MRI {name}: {row['without_colour']['rate']} → {row['with_colour']['rate']} with colour")
    return 0
