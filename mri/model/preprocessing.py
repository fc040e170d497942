"""The model's preprocessing: from a decoded gray scan (mri.intake.decode) to the model's input,
and back (map_to_scan). The one path shared by serving and evaluation, so both score scans
identically; it runs no model.

The model sees a scan the same way whatever exported it: cropped to the head's bounding box so
framing and margins do not matter, padded to a square so the aspect ratio is kept,
contrast-stretched between robust percentiles, and resized to the model's input size.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mri.intake.decode import decode_gray_bounded
from mri.intake.gray import normalize_contrast


@dataclass(frozen=True)
class Crop:
    """Where the model input came from in the original scan: rows y0:y1, columns x0:x1."""

    y0: int
    y1: int
    x0: int
    x1: int


# Head-crop variants, named in the model card (`preprocessing.head_crop`): a model is served
# with the crop it was trained on. "v1": background = under 10 % of the bright level, which
# the grey noise floor of many exports exceeds (about a third of the training scans were then
# "cropped" to the whole image). "lit": lit pixels only; the floor is also at least half of
# Otsu's threshold between background and tissue, so noise stays out of the box.
HEAD_CROPS = ("v1", "lit")


def head_crop(gray: np.ndarray, variant: str = "v1") -> Crop:
    """Bounding box of the head (non-background) with a small margin.

    Background is judged against a threshold relative to the image's bright level after a
    blur, so noise, text burnt into corners and the export's brightness do not move it much.
    Falls back to the whole image when nothing plausible is found.
    """
    if variant not in HEAD_CROPS:
        raise ValueError(f"unknown head crop {variant!r}; known: {', '.join(HEAD_CROPS)}")
    height, width = gray.shape
    small = cv2.GaussianBlur(gray, (0, 0), sigmaX=max(1.0, min(height, width) / 200))
    bright = float(np.percentile(small, 99))
    if bright <= 0.02:
        return Crop(0, height, 0, width)
    floor = 0.1 * bright
    if variant == "lit":
        otsu, _ = cv2.threshold(
            (np.clip(small, 0, 1) * 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU
        )
        floor = max(floor, 0.5 * otsu / 255.0)
    mask = (small > floor).astype(np.uint8)
    count, _labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return Crop(0, height, 0, width)
    # Keep components that are a real part of the head, not specks or corner labels.
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= 0.02 * areas.max()) + 1
    boxes = stats[keep]
    x0 = int(boxes[:, cv2.CC_STAT_LEFT].min())
    y0 = int(boxes[:, cv2.CC_STAT_TOP].min())
    x1 = int((boxes[:, cv2.CC_STAT_LEFT] + boxes[:, cv2.CC_STAT_WIDTH]).max())
    y1 = int((boxes[:, cv2.CC_STAT_TOP] + boxes[:, cv2.CC_STAT_HEIGHT]).max())
    if (x1 - x0) * (y1 - y0) < 0.05 * height * width:
        return Crop(0, height, 0, width)
    margin = int(0.04 * max(x1 - x0, y1 - y0))
    return Crop(max(0, y0 - margin), min(height, y1 + margin), max(0, x0 - margin), min(width, x1 + margin))


def square_pad(gray: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Pad with black to a square, centred. Returns the image and the (top, left) offsets."""
    height, width = gray.shape
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    out = np.zeros((side, side), dtype=np.float32)
    out[top : top + height, left : left + width] = gray
    return out, top, left


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Area interpolation when shrinking (no aliasing at 2048 px), cubic when enlarging."""
    interpolation = cv2.INTER_AREA if gray.shape[0] > size else cv2.INTER_CUBIC
    return np.clip(cv2.resize(gray, (size, size), interpolation=interpolation), 0.0, 1.0)


@dataclass(frozen=True)
class Prepared:
    """Model input (size×size float32 gray in [0, 1]) and how to map it back onto the scan."""

    pixels: np.ndarray
    crop: Crop
    pad_top: int
    pad_left: int
    original_shape: tuple[int, int]


def prepare(gray: np.ndarray, size: int, head_crop_variant: str = "v1") -> Prepared:
    """The serving preprocessing, from a decoded gray scan to the model's input."""
    crop = head_crop(gray, head_crop_variant)
    region = normalize_contrast(gray[crop.y0 : crop.y1, crop.x0 : crop.x1])
    squared, top, left = square_pad(region)
    return Prepared(resize_square(squared, size), crop, top, left, gray.shape)


def to_model_input(pixels: np.ndarray) -> np.ndarray:
    """Gray [0, 1] (…, H, W) to the 3-channel 0-255 float input the model expects."""
    return np.repeat((pixels * 255.0)[..., None], 3, axis=-1).astype(np.float32)


def map_to_scan(values: np.ndarray, prepared: Prepared) -> np.ndarray:
    """Put a square map over the model input back onto the scan's own pixels (zeros outside)."""
    crop = prepared.crop
    region_h, region_w = crop.y1 - crop.y0, crop.x1 - crop.x0
    side = max(region_h, region_w)
    square = cv2.resize(values.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    region = square[prepared.pad_top : prepared.pad_top + region_h, prepared.pad_left : prepared.pad_left + region_w]
    out = np.zeros(prepared.original_shape, dtype=np.float32)
    out[crop.y0 : crop.y1, crop.x0 : crop.x1] = region
    return out


def preprocess_scan(data: bytes, input_size: int, head_crop: str = "v1") -> Prepared:
    """Uploaded bytes → the model's input (and how to map results back onto the scan). A scan
    longer than WORK_SIDE is analysed on a box-averaged copy (mri/intake/decode.py)."""
    return prepare(decode_gray_bounded(data), input_size, head_crop)


def model_batch(prepared: list[Prepared]) -> np.ndarray:
    return to_model_input(np.stack([p.pixels for p in prepared]))
