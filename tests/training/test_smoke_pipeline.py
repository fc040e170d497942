"""Smoke mode: train → calibrate → evaluate through the real CLI, producing every file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.data import DEFAULT_DATA, load_split

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.model


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "training", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def test_smoke_train_calibrate_evaluate(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_cli("train", "--smoke", "--run-dir", str(run_dir), "--backbone-weights", "none", "--verbose", "2")
    model_dir = run_dir / "model"
    for name in ("model_card.json", "split.json", "training_curves.png", "weights-00.npz"):
        assert (model_dir / name).exists(), name
    assert (run_dir / "checkpoint.keras").exists()
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs

    run_cli("calibrate", "--model", str(model_dir))
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["temperature"] > 0
    assert card["validation"]["n"] == 12
    assert (model_dir / "reliability.png").exists()

    # A folder-per-class set: a few validation scans, linked in.
    data = tmp_path / "data"
    for key in load_split()["val"][::300]:
        target = data / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(DEFAULT_DATA / key)
    for name in ("glioma", "meningioma", "notumor", "pituitary"):
        (data / name).mkdir(parents=True, exist_ok=True)
    out = tmp_path / "eval"
    run_cli("evaluate", "--data", str(data), "--out", str(out), "--model", str(model_dir))
    for name in ("metrics.json", "predictions.csv", "confusion_matrix.png", "reliability.png"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file,true,predicted,p_glioma,p_meningioma,p_notumor,p_pituitary"
    assert len(rows) - 1 == metrics["n"] == len(load_split()["val"][::300])
    for key in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "ece_15", "nll", "brier"):
        assert key in metrics


def test_resume_continues_from_the_last_epoch(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_cli("train", "--smoke", "--run-dir", str(run_dir), "--backbone-weights", "none", "--verbose", "2")
    state = json.loads((run_dir / "state.json").read_text())
    assert state == {"phase": "finetune", "epochs_done": 2}
    result = run_cli("train", "--smoke", "--run-dir", str(run_dir), "--backbone-weights", "none",
                     "--resume", "--finetune-epochs", "1", "--verbose", "2")
    assert "resuming from" in result.stdout
