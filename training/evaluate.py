"""`evaluate`: score a folder-per-class set of scans with the serving preprocessing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from training.data import list_samples
from training.metrics import summarize
from training.plots import plot_confusion, plot_reliability
from training.scoring import scan_logits
from workers.imaging import CLASS_NAMES
from workers.inference import calibrated_probabilities
from workers.model_store import DEFAULT_MODEL_DIR, head_crop_of, load_classifier


def evaluate(data_dir: Path, out_dir: Path, model_dir: Path = DEFAULT_MODEL_DIR, progress: bool = True) -> dict:
    """Write metrics.json, predictions.csv, confusion_matrix.png, reliability.png; return metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, card = load_classifier(model_dir)
    samples = list_samples(Path(data_dir))
    true = np.array([s.label for s in samples])
    logits = scan_logits(
        model, [s.path for s in samples], int(card["input_size"]), progress=progress, head_crop=head_crop_of(card)
    )
    probabilities = calibrated_probabilities(logits, float(card.get("temperature", 1.0)))
    metrics = summarize(probabilities, true, CLASS_NAMES)
    metrics.update(
        {"model_version": card.get("version"), "temperature": card.get("temperature", 1.0), "data": str(data_dir)}
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_predictions(
        out_dir / "predictions.csv", [str(s.path.relative_to(data_dir)) for s in samples], true, probabilities
    )
    plot_confusion(np.array(metrics["confusion_matrix"]), CLASS_NAMES, out_dir / "confusion_matrix.png")
    plot_reliability(probabilities, true, out_dir / "reliability.png", metrics["ece_15"])
    return metrics


def write_predictions(path: Path, files: list[str], true: np.ndarray, probabilities: np.ndarray) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "true", "predicted", *[f"p_{name}" for name in CLASS_NAMES]])
        for name, label, row in zip(files, true, probabilities, strict=True):
            writer.writerow([name, CLASS_NAMES[label], CLASS_NAMES[int(row.argmax())], *[f"{p:.6f}" for p in row]])
