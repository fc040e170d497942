"""Pictures of results: confusion matrix and reliability diagram, and `pyplot()`, matplotlib set
up once for every training figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.metrics import reliability_bins


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display): the one place every
    training figure sets matplotlib up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], out_path: Path, title: str = "") -> None:
    plt = pyplot()
    matrix = np.asarray(matrix)
    figure, axis = plt.subplots(figsize=(5.5, 4.8))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            axis.text(
                j,
                i,
                f"{matrix[i, j]}\n{shares[i, j]:.1%}",
                ha="center",
                va="center",
                color="white" if shares[i, j] > 0.5 else "black",
                fontsize=9,
            )
    axis.set_xticks(range(len(class_names)), class_names, rotation=20)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title or f"Confusion matrix (n={int(matrix.sum())})")
    figure.tight_layout()
    figure.savefig(out_path, dpi=120)
    plt.close(figure)


def plot_reliability(probabilities: np.ndarray, true: np.ndarray, out_path: Path, ece: float, bins: int = 15) -> None:
    plt = pyplot()
    rows = reliability_bins(probabilities, true, bins)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    centers = [(r["low"] + r["high"]) / 2 for r in rows]
    width = 1.0 / bins
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.bar(
        centers, [r["accuracy"] or 0 for r in rows], width=width * 0.9, color="#3b7dd8", alpha=0.8, label="accuracy"
    )
    top.plot(
        [c for c, r in zip(centers, rows, strict=True) if r["count"]],
        [r["confidence"] for r in rows if r["count"]],
        "o",
        color="#d8573b",
        label="mean confidence",
    )
    top.set_ylabel("accuracy")
    top.set_title(f"Reliability diagram (ECE {ece:.2%}, {bins} bins)")
    top.legend(loc="upper left")
    bottom.bar(centers, [r["count"] for r in rows], width=width * 0.9, color="gray")
    bottom.set_yscale("log")
    bottom.set_xlabel("top-1 probability")
    bottom.set_ylabel("scans")
    figure.tight_layout()
    figure.savefig(out_path, dpi=120)
    plt.close(figure)
