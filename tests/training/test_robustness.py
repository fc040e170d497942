"""`python -m training robustness`: the shipped model and gate on real validation scans exported
in other ways. The gate reads texture, so a re-export of a real slice must not look like a
non-MRI image to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mri.card import DEFAULT_MODEL_DIR
from mri.vocabulary import CLASS_NAMES
from training.data import DEFAULT_DATA, load_split, samples_from_keys
from training.robustness import PERTURBATIONS, robustness_report


@pytest.mark.model
def test_every_export_is_scored_by_the_classifier_and_the_gate(tmp_path: Path) -> None:
    keys = load_split()["val"]
    picked = [key for name in CLASS_NAMES for key in [k for k in keys if k.startswith(f"{name}/")][:2]]
    report = robustness_report(DEFAULT_MODEL_DIR, samples_from_keys(DEFAULT_DATA, picked), tmp_path)
    assert set(report) == set(PERTURBATIONS)
    for name, row in report.items():
        assert 0 <= row["gate_rejected_count"] <= len(picked), name
        assert set(row["recall"]) == set(CLASS_NAMES)
    # Two validation scans of each class: accepted however they were exported (the block-4 gate
    # before its export views rejected a quarter of the low-contrast exports), nearly all right.
    rejected = {name: row["gate_rejected_count"] for name, row in report.items() if row["gate_rejected_count"]}
    assert not rejected, rejected
    assert report["clean"]["accuracy"] >= 0.75
    written = json.loads((tmp_path / "robustness.json").read_text())
    assert written["n"] == len(picked)
    assert written["results"]["downscale_128"] == report["downscale_128"]
