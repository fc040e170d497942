"""Classification and calibration metrics, in plain NumPy (checked against scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion(true: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(matrix).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / matrix.sum(axis=0))
        recall = np.nan_to_num(tp / matrix.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return {"precision": precision, "recall": recall, "f1": f1, "support": matrix.sum(axis=1)}


def expected_calibration_error(probabilities: np.ndarray, true: np.ndarray, bins: int = 15) -> float:
    """ECE over equal-width confidence bins of the top-1 probability."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def reliability_bins(probabilities: np.ndarray, true: np.ndarray, bins: int = 15) -> list[dict]:
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "count": int((which == b).sum()),
            "accuracy": float(correct[which == b].mean()) if (which == b).any() else None,
            "confidence": float(confidence[which == b].mean()) if (which == b).any() else None,
        }
        for b in range(bins)
    ]


def negative_log_likelihood(probabilities: np.ndarray, true: np.ndarray) -> float:
    picked = np.clip(probabilities[np.arange(len(true)), true], 1e-12, 1.0)
    return float(-np.log(picked).mean())


def brier_score(probabilities: np.ndarray, true: np.ndarray) -> float:
    """Mean over scans of the squared distance to the one-hot truth (summed over classes)."""
    onehot = np.eye(probabilities.shape[1])[true]
    return float(((probabilities - onehot) ** 2).sum(axis=1).mean())


def summarize(probabilities: np.ndarray, true: Sequence[int], class_names: Sequence[str]) -> dict:
    true = np.asarray(true)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion(true, predicted, len(class_names))
    stats = per_class(matrix)
    return {
        "n": len(true),
        "accuracy": float((predicted == true).mean()),
        "macro_f1": float(stats["f1"].mean()),
        "per_class": {
            name: {key: (int(stats[key][i]) if key == "support" else float(stats[key][i])) for key in stats}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": matrix.tolist(),
        "ece_15": expected_calibration_error(probabilities, true, 15),
        "nll": negative_log_likelihood(probabilities, true),
        "brier": brier_score(probabilities, true),
    }
