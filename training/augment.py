"""Augmentation that makes the model indifferent to how a scan was exported.

The data README: no-tumor slices come from a lower-resolution source, and a model fine-tuned on
differently exported copies lost ~8 points. So besides geometry (rotation ±15°, flips, zoom),
every class gets the same random resolution loss (down-and-up scaling), blur or sharpening,
noise, brightness/contrast/gamma and JPEG re-encoding.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def augment(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 gray stored scan → augmented float32 gray in [0, 1] at size×size."""
    x = image.astype(np.float32) / 255.0
    x = random_geometry(x, rng)
    if rng.random() < 0.4:
        x = down_up(x, rng.uniform(0.25, 0.75))
    if rng.random() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=rng.uniform(0.4, 1.5))
    elif rng.random() < 0.3:
        x = sharpen(x, rng.uniform(0.3, 1.5), rng.uniform(0.6, 2.0))
    if rng.random() < 0.25:
        x = x + rng.normal(0.0, rng.uniform(0.005, 0.04), x.shape).astype(np.float32)
    if rng.random() < 0.5:
        x = x * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08)
    x = np.clip(x, 0.0, 1.0)
    if rng.random() < 0.4:
        x = x ** rng.uniform(0.7, 1.45)
    if rng.random() < 0.3:
        x = jpeg(x, int(rng.integers(40, 96)))
    interpolation = cv2.INTER_AREA if x.shape[0] > size else cv2.INTER_CUBIC
    return np.clip(cv2.resize(x, (size, size), interpolation=interpolation), 0.0, 1.0)


def random_geometry(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = x.shape[0]
    angle = rng.uniform(-15, 15)
    zoom = rng.uniform(0.9, 1.15)
    shift = rng.uniform(-0.05, 0.05, size=2) * side
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), angle, zoom)
    matrix[:, 2] += shift
    x = cv2.warpAffine(x, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    if rng.random() < 0.1:
        x = x[::-1, :]
    return np.ascontiguousarray(x)


def down_up(x: np.ndarray, factor: float) -> np.ndarray:
    side = x.shape[0]
    small = max(32, int(side * factor))
    x = cv2.resize(x, (small, small), interpolation=cv2.INTER_AREA)
    return cv2.resize(x, (side, side), interpolation=cv2.INTER_CUBIC if factor < 0.5 else cv2.INTER_LINEAR)


def sharpen(x: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    return x + amount * (x - cv2.GaussianBlur(x, (0, 0), sigmaX=sigma))


def jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    _ok, buffer = cv2.imencode(
        ".jpg", (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    return cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0


def center(image: np.ndarray, size: int) -> np.ndarray:
    """No augmentation: the stored scan at the model's size, as validation sees it."""
    x = image.astype(np.float32) / 255.0
    interpolation = cv2.INTER_AREA if x.shape[0] > size else cv2.INTER_CUBIC
    return np.clip(cv2.resize(x, (size, size), interpolation=interpolation), 0.0, 1.0)


# --- sequence look (issue 16) ------------------------------------------------------------------
# Tumour slices of the training merge are mostly T1 post-contrast, many tumour-free ones T2: a
# model can learn "T2 look → no tumour". Remapping the intensities inside the head changes the
# look of the sequence (inversion makes a T1-like slice T2-like) while the anatomy, and so the
# label, stays.

SEQUENCE_REMAPS = ("invert", "curve", "gamma")


# Names the views' recipe in their cache keys (training.head_refit.remapped_items): a change to
# head_mask or sequence_remap must change it, or cached maps of the old views are reused.
SEQUENCE_REMAP_RECIPE = "parts2"


def head_mask(gray: np.ndarray) -> np.ndarray:
    """The head: the bright components (threshold a third of Otsu's) of at least 2 % of the
    largest one's area, holes filled. Not the largest alone: a skull-stripped slice near the
    vertex falls apart into pieces, and a tumour at the brain's edge can be one of them (it was
    blanked in the views of brats-2013-pat0001's slices 033-041 until 2026-12-07)."""
    otsu, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = (gray > max(8.0, otsu * 0.35)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count > 1:
        areas = stats[1:, cv2.CC_STAT_AREA]
        mask = np.isin(labels, 1 + np.flatnonzero(areas >= 0.02 * areas.max())).astype(np.uint8)
    # Holes are what the outside cannot reach: flood from a one-pixel frame around the image,
    # so a head touching a corner or an edge does not stop the fill.
    outside = np.pad(mask, 1)
    cv2.floodFill(outside, np.zeros((outside.shape[0] + 2, outside.shape[1] + 2), np.uint8), (0, 0), 1)
    return (mask | (1 - outside[1:-1, 1:-1])).astype(bool)


def sequence_remap(gray: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """uint8 gray slice → the same slice with another intensity mapping inside the head
    (background stays black), re-windowed to its 0.5-99.5th percentiles."""
    if kind not in SEQUENCE_REMAPS:
        raise ValueError(f"unknown sequence remap {kind!r}; known: {SEQUENCE_REMAPS}")
    gamma = rng.uniform(0.4, 2.5) if kind == "gamma" else 1.0
    knots = rng.uniform(0, 1, 6) if kind == "curve" else None  # a random, not necessarily monotone, curve

    def curve(x: np.ndarray) -> np.ndarray:
        if kind == "invert":
            return 1.0 - x
        if knots is not None:
            return np.interp(x, np.linspace(0, 1, 6), knots).astype(np.float32)
        return x**gamma

    return remap_head(gray, curve)


def remap_head(gray: np.ndarray, curve: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """uint8 gray slice → `curve` (of intensities in [0, 1]) applied inside the head, the
    background black, re-windowed to the head's 0.5-99.5th percentiles."""
    mask = head_mask(gray)
    y = np.where(mask, curve(gray.astype(np.float32) / 255.0), 0.0)
    low, high = np.percentile(y[mask], [0.5, 99.5]) if mask.any() else (0.0, 1.0)
    y = np.clip((y - low) / max(high - low, 1e-3), 0.0, 1.0) * mask
    return (y * 255).astype(np.uint8)
