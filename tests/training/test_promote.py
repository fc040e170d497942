"""`python -m training promote`: a candidate ships only when better on validation accuracy,
macro-F1 and ECE together, only when complete (its own OOD statistics and heatmap method), and
the shipped card keeps every earlier model in `history`. Model folders here are small but real
(sharded weights with their sha256 in the card), so the integrity checks run as in serving."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.__main__ import main
from training.promote import PromotionRefused, promote
from workers.model_store import read_card, sha256_file, verified_weights, write_card

SPLIT = {"train": ["glioma/a.jpg", "notumor/b.jpg"], "val": ["glioma/c.jpg", "pituitary/d.jpg"]}


def model_folder(
    path: Path, version: str, accuracy: float, macro_f1: float, ece: float, *, seed: int = 0, **extra: object
) -> Path:
    path.mkdir(parents=True)
    weights = np.random.default_rng(seed).normal(size=(4, 3)).astype(np.float16)
    np.savez(path / "weights-00.npz", w0=weights)
    (path / "split.json").write_text(json.dumps(SPLIT))
    (path / f"{version}-plot.png").write_bytes(b"plot of " + version.encode())
    card = {
        "version": version,
        "created": "2026-11-27T00:00:00+00:00",
        "input_size": 224,
        "recipe": {"seed": seed},
        "weights_sha256": {"weights-00.npz": sha256_file(path / "weights-00.npz")},
        "validation": {"n": 2, "calibrated": {"accuracy": accuracy, "macro_f1": macro_f1, "ece_15": ece}},
        "ood": {"threshold": 3.0, "fitted_on": "training split"},
        "heatmap_method": "layercam",
        **extra,
    }
    write_card(path, card)
    return path


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    return model_folder(tmp_path / "shipped", "v1", 0.988, 0.9876, 0.0043)


def test_a_candidate_better_on_every_metric_ships_and_the_card_keeps_the_old_one(
    tmp_path: Path, shipped: Path
) -> None:
    candidate = model_folder(tmp_path / "candidate", "v2", 0.991, 0.9905, 0.0040, seed=1)
    decision = promote(candidate, shipped)
    assert decision["promoted"] is True
    card = read_card(shipped)
    assert card["version"] == "v2"
    assert [entry["version"] for entry in card["history"]] == ["v1"]
    assert card["history"][0]["validation"]["calibrated"]["accuracy"] == 0.988
    # The folder is the candidate's: its weights verify, the old model's files are gone.
    shipped_weights = verified_weights(shipped, card)[0]
    np.testing.assert_array_equal(shipped_weights, verified_weights(candidate, read_card(candidate))[0])
    assert (shipped / "v2-plot.png").exists()
    assert not (shipped / "v1-plot.png").exists()

    third = model_folder(tmp_path / "third", "v3", 0.995, 0.995, 0.003, seed=2)
    promote(third, shipped)
    assert [entry["version"] for entry in read_card(shipped)["history"]] == ["v1", "v2"]  # oldest first


@pytest.mark.parametrize(
    ("accuracy", "macro_f1", "ece", "not_better"),
    [
        (0.991, 0.9905, 0.0050, "ece_15"),  # more accurate but less well calibrated
        (0.988, 0.9905, 0.0040, "accuracy"),  # a tie is not better
        (0.991, 0.9870, 0.0040, "macro_f1"),
    ],
)
def test_a_candidate_not_better_on_all_three_does_not_ship(
    tmp_path: Path, shipped: Path, accuracy: float, macro_f1: float, ece: float, not_better: str
) -> None:
    before = {p.name: p.read_bytes() for p in shipped.iterdir()}
    candidate = model_folder(tmp_path / "candidate", "v2", accuracy, macro_f1, ece, seed=1)
    decision = promote(candidate, shipped)
    assert decision["promoted"] is False
    assert [m for m, row in decision["comparison"].items() if not row["better"]] == [not_better]
    assert {p.name: p.read_bytes() for p in shipped.iterdir()} == before
    recorded = json.loads((candidate / "promotion.json").read_text())
    assert recorded["comparison"][not_better]["better"] is False


def test_a_dry_run_records_the_decision_and_changes_nothing(tmp_path: Path, shipped: Path) -> None:
    candidate = model_folder(tmp_path / "candidate", "v2", 0.991, 0.9905, 0.0040, seed=1)
    assert promote(candidate, shipped, dry_run=True)["promoted"] is False
    assert read_card(shipped)["version"] == "v1"
    assert json.loads((candidate / "promotion.json").read_text())["promoted"] is False


@pytest.mark.parametrize(
    ("missing", "named"),
    [("ood", "ood fit"), ("heatmap_method", "explain-eval"), ("validation", "calibrate")],
)
def test_an_incomplete_candidate_is_refused_with_the_command_to_run(
    tmp_path: Path, shipped: Path, missing: str, named: str
) -> None:
    candidate = model_folder(tmp_path / "candidate", "v2", 0.991, 0.9905, 0.0040, seed=1)
    card = read_card(candidate)
    del card[missing]
    write_card(candidate, card)
    with pytest.raises(PromotionRefused, match=named):
        promote(candidate, shipped)
    assert read_card(shipped)["version"] == "v1"


def test_a_candidate_validated_on_another_split_is_not_comparable(tmp_path: Path, shipped: Path) -> None:
    candidate = model_folder(tmp_path / "candidate", "v2", 0.991, 0.9905, 0.0040, seed=1)
    (candidate / "split.json").write_text(json.dumps({**SPLIT, "val": ["glioma/c.jpg"]}))
    with pytest.raises(PromotionRefused, match="another split"):
        promote(candidate, shipped)


def test_the_command_line_prints_each_metric_and_the_decision(
    tmp_path: Path, shipped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    candidate = model_folder(tmp_path / "candidate", "v2", 0.991, 0.9905, 0.0050, seed=1)
    assert main(["promote", "--candidate", str(candidate), "--into", str(shipped)]) == 0
    out = capsys.readouterr().out
    assert "ece_15: candidate 0.00500  shipped 0.00430  NOT better" in out
    assert "not shipped: v1 stays" in out


def test_an_incomplete_candidate_that_is_not_better_gets_its_decision_recorded(tmp_path: Path, shipped: Path) -> None:
    # Worth knowing before the minutes of `ood fit` and `explain-eval` are spent on it.
    candidate = model_folder(tmp_path / "candidate", "v2", 0.986, 0.9859, 0.0055, seed=1)
    card = read_card(candidate)
    del card["ood"], card["heatmap_method"]
    write_card(candidate, card)
    decision = promote(candidate, shipped)
    assert decision["promoted"] is False
    assert decision["better"] is False
    assert len(decision["missing_for_serving"]) == 2
    assert read_card(shipped)["version"] == "v1"
