"""`evaluate` on the external set reports per sequence: tumour sensitivity, what tumours were
called instead, the gate's rejections (a rejected slice is a miss) and ECE; on real slices with
the shipped model, and on hand-made probabilities for the arithmetic."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from training.evaluate import evaluate
from training.external import EXTERNAL_DATA, ExternalSlice, breakdown, load_external_split, read_manifest


def _slice(key: str, label: str, sequence: str) -> ExternalSlice:
    return ExternalSlice(key, label, sequence, "p", "test", 0.5, True)


def test_breakdown_counts_a_rejected_tumour_as_a_miss() -> None:
    rows = [_slice("a", "glioma", "t2"), _slice("b", "glioma", "t2"), _slice("c", "glioma", "t2"),
            _slice("d", "notumor", "t2"), _slice("e", "glioma", "flair")]  # fmt: skip
    # glioma, meningioma, notumor, pituitary
    probabilities = np.array([
        [0.90, 0.05, 0.03, 0.02],  # a: glioma, right
        [0.00, 0.00, 0.995, 0.005],  # b: "No tumour" at 99.5 %: a confident miss
        [0.10, 0.80, 0.05, 0.05],  # c: meningioma (still a tumour) but rejected by the gate
        [0.05, 0.05, 0.85, 0.05],  # d: no tumour, right
        [0.20, 0.70, 0.05, 0.05],  # e: meningioma: a tumour
    ])  # fmt: skip
    rejected = np.array([False, False, True, False, False])
    report = breakdown(rows, probabilities, rejected)
    t2 = report["T2"]
    assert t2["n"] == 4
    assert t2["rejected"] == 1
    assert t2["tumour"]["sensitivity"] == round(1 / 3, 4)
    assert t2["tumour"]["sensitivity_among_accepted"] == 0.5
    assert t2["tumour"]["called_notumor"] == 1
    assert t2["tumour"]["confident_notumor_099"] == 1
    assert t2["notumor"]["specificity"] == 1.0
    assert report["FLAIR"]["tumour"]["called"]["meningioma"] == 1
    assert report["FLAIR"]["tumour"]["sensitivity"] == 1.0
    assert report["all"]["n"] == 5


@pytest.mark.skipif(not (EXTERNAL_DATA / "manifest.csv").exists(), reason="external data set not present")
def test_evaluate_reports_each_sequence_on_real_external_slices(tmp_path: Path) -> None:
    """Two slices per (label, sequence) cell of the committed validation part, shipped model."""
    split = load_external_split()
    by_key = {r.key: r for r in read_manifest()}
    chosen: dict[tuple[str, str], list[str]] = {}
    for key in split["val"]:
        chosen.setdefault(by_key[key].cell, []).append(key)
    keys = [k for cell in sorted(chosen) for k in chosen[cell][:2]]
    small = tmp_path / "split.json"
    small.write_text(json.dumps({"train": [], "val": keys}))
    metrics = evaluate(EXTERNAL_DATA, tmp_path / "out", split_file=small, part="val", progress=False)
    assert metrics["n"] == len(keys) == 14
    assert set(metrics["per_sequence"]) == {"FLAIR", "T2", "T1", "T1 post-contrast", "all"}
    assert "tumour" not in metrics["per_sequence"]["T1 post-contrast"]  # no T1c tumour slices
    with open(tmp_path / "out" / "predictions.csv", newline="") as handle:
        predictions = list(csv.DictReader(handle))
    assert [p["file"] for p in predictions] == keys
    # The per-sequence figures agree with the per-slice predictions.
    for sequence, name in (("t2", "T2"), ("flair", "FLAIR"), ("t1", "T1")):
        tumours = [p for p in predictions if p["true"] == "glioma" and by_key[p["file"]].sequence == sequence]
        hits = sum(p["predicted"] != "notumor" and p["rejected"] == "0" for p in tumours)
        assert metrics["per_sequence"][name]["tumour"]["sensitivity"] == round(hits / len(tumours), 4)
    assert (tmp_path / "out" / "reliability-t2.png").exists()
