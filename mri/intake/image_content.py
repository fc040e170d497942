"""Refusing, at upload, images that carry no picture at all: blank, one colour, or pure noise.

These never need the model: a constant image has nothing to classify, and in independent
pixel noise neighbouring pixels are unrelated, while in any real slice (even a noisy one) they
are strongly alike. Both checks run on a copy shrunk by area averaging to at most 256 px,
which keeps independent noise independent (block means of independent pixels) and makes
every real image smoother still. No TensorFlow: the web process runs this.

Thresholds, against the 5,712 scans of the training folder (`python -m training ood
upload-check`): their smallest robust spread is 0.58 (limit 0.02) and their smallest neighbour
correlation 0.52 (limit 0.3; independent noise is about 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mri.intake.gray import area_shrink
from mri.intake.limits import ScanDecodeError

# Robust range (99.5th - 0.5th percentile) of gray in [0, 1] below which an image is blank:
# about 5 of 255 levels.
MIN_SPREAD = 0.02
# Pearson correlation of horizontally and vertically adjacent pixels below which an image is
# noise (independent noise: about 0; the training scans: 0.52 and above).
MIN_NEIGHBOUR_CORRELATION = 0.3
CHECK_SIDE = 256


@dataclass(frozen=True)
class ContentStats:
    spread: float
    neighbour_correlation: float


def content_stats(gray: np.ndarray) -> ContentStats:
    """Robust spread and neighbour correlation of a gray image in [0, 1]."""
    gray = np.asarray(gray, dtype=np.float32)
    scale = CHECK_SIDE / max(gray.shape)
    if scale < 1:
        size = (max(2, round(gray.shape[1] * scale)), max(2, round(gray.shape[0] * scale)))
        gray = area_shrink(gray, size)
    low, high = np.percentile(gray, [0.5, 99.5])
    pairs = [(gray[:, :-1], gray[:, 1:]), (gray[:-1, :], gray[1:, :])]
    left = np.concatenate([a.ravel() for a, _ in pairs]).astype(np.float64)
    right = np.concatenate([b.ravel() for _, b in pairs]).astype(np.float64)
    left -= left.mean()
    right -= right.mean()
    denominator = float(np.sqrt((left * left).sum() * (right * right).sum()))
    correlation = float((left * right).sum() / denominator) if denominator > 0 else 1.0
    return ContentStats(spread=float(high - low), neighbour_correlation=correlation)


def reject_uninformative(gray: np.ndarray) -> None:
    """Raise ScanDecodeError (a message for the user) for a blank, constant or noise image."""
    stats = content_stats(gray)
    if stats.spread < MIN_SPREAD:
        raise ScanDecodeError("The image is blank (a single colour, or nearly): there is no scan in it to analyse.")
    if stats.neighbour_correlation < MIN_NEIGHBOUR_CORRELATION:
        raise ScanDecodeError(
            "The image is random noise, not a scan: neighbouring pixels are unrelated "
            f"(correlation {stats.neighbour_correlation:.2f}; brain MRI slices are above 0.5)."
        )
