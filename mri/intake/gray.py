"""Gray images as every decoder returns them: float32 in [0, 1] (Pillow modes here, DICOM frames in
mri.intake.dicom), and the contrast stretch both apply. NumPy and Pillow only."""
from __future__ import annotations

import numpy as np
from PIL import Image


def to_gray(image: Image.Image) -> np.ndarray:
    """Any Pillow mode (1, L, P, RGB, RGBA, LA, I;16, I, F) to float32 gray in [0, 1]."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        if mode.startswith("I;16"):
            return np.clip(pixels / 65535.0, 0.0, 1.0)
        # 32-bit integer or float PNGs carry no fixed scale: use the image's own range.
        low, high = float(pixels.min()), float(pixels.max())
        return np.zeros_like(pixels) if high <= low else (pixels - low) / (high - low)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Transparent pixels are background: composite on black, the colour of an MRI background.
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def area_shrink(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`gray` shrunk to `size` (width, height) by area averaging: each output pixel is the mean of
    the input area it covers, partial pixels weighted by their overlap. The same values as
    OpenCV's INTER_AREA (to float32 rounding), in NumPy, so the web process never loads OpenCV."""
    width, height = size
    return _area_axis(_area_axis(np.asarray(gray, dtype=np.float32), height, 0), width, 1).astype(np.float32)


def _area_axis(values: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Area averaging along one axis (n_out ≤ its length): an integer factor is a block mean;
    otherwise the difference of the running integral at each output cell's edges."""
    n_in = values.shape[axis]
    if n_in == n_out:
        return values
    if n_in % n_out == 0:
        factor = n_in // n_out
        shape = (*values.shape[:axis], n_out, factor, *values.shape[axis + 1 :])
        return values.reshape(shape).mean(axis=axis + 1, dtype=np.float64).astype(np.float32)
    moved = np.moveaxis(values, axis, 0).astype(np.float64)
    rest = moved.shape[1:]
    integral = np.concatenate([np.zeros((1, *rest)), np.cumsum(moved, axis=0)])
    padded = np.concatenate([moved, np.zeros((1, *rest))])  # an edge at n_in reads a zero cell
    edges = np.arange(n_out + 1) * n_in / n_out
    whole = np.minimum(np.floor(edges).astype(np.int64), n_in)
    part = (edges - whole).reshape(-1, *([1] * len(rest)))
    at_edges = integral[whole] + part * padded[whole]
    return np.moveaxis((at_edges[1:] - at_edges[:-1]) * (n_out / n_in), 0, axis).astype(np.float32)



def normalize_contrast(gray: np.ndarray) -> np.ndarray:
    """Stretch so the head's 99.5th percentile is white: brightness and contrast of the export
    stop mattering. Background (near-black) is left out of the statistics."""
    foreground = gray[gray > 0.02]
    if foreground.size < 100:
        return gray
    high = float(np.percentile(foreground, 99.5))
    if high <= 0.05:
        return gray
    return np.clip(gray / high, 0.0, 1.0)
