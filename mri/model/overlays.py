"""Rendering and encoding of heatmaps, kept apart from computing them (mri/model/cams.py): drawing
needs only pixels (the shape of jacobgil/pytorch-grad-cam's base_cam / utils.image). The
overlay PNG and the gray heatmap PNG are both encoded here."""
from __future__ import annotations

import cv2
import numpy as np


def render_overlay(gray: np.ndarray, heatmap: np.ndarray, strength: float = 0.55) -> np.ndarray:
    """RGB uint8: the scan in gray, tinted with the JET colour map where the heatmap is high.

    Opacity follows the heatmap, so cold regions keep the scan's own pixels instead of the
    uniform blue cast of a flat 50/50 blend.
    """
    return render_overlay_bgr(gray, heatmap, strength)[..., ::-1]


def render_overlay_bgr(gray: np.ndarray, heatmap: np.ndarray, strength: float = 0.55) -> np.ndarray:
    """`render_overlay` in OpenCV's BGR order, blended per pixel in one OpenCV call (the
    serving path: no float copies of the three channels, nothing to reorder before encoding)."""
    base = cv2.cvtColor((np.clip(gray, 0, 1) * 255.0 + 0.5).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    heat = np.clip(heatmap, 0, 1).astype(np.float32)
    colours = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = strength * heat
    return cv2.blendLinear(base, colours, 1.0 - alpha, alpha)


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image (fast compression: overlays are rendered per scan)."""
    return encode_png_bgr(np.ascontiguousarray(rgb[..., ::-1]))


def encode_png_bgr(bgr: np.ndarray) -> bytes:
    """PNG bytes of a BGR uint8 image; zlib level 1 with the "filtered" strategy: the same
    size as the default strategy here, in about half the time."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_FILTERED]
    ok, buffer = cv2.imencode(".png", bgr, params)
    if not ok:
        raise RuntimeError("could not encode the overlay as PNG")
    return buffer.tobytes()


def overlay_png(gray: np.ndarray, heatmap: np.ndarray) -> bytes:
    """The overlay a worker stores: `render_overlay` as PNG bytes."""
    return encode_png_bgr(render_overlay_bgr(gray, heatmap))


def encode_heatmap_png(heatmap: np.ndarray) -> bytes:
    """8-bit gray PNG of a 2-D map in [0, 1] (NaN → 0): the stored heatmap, coloured in the
    browser so the colour map and opacity can change without a new request."""
    values = np.asarray(heatmap, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"a heatmap must be 2-D, got shape {values.shape}")
    pixels = (np.clip(np.nan_to_num(values), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    ok, buffer = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("could not encode the heatmap as PNG")
    return buffer.tobytes()
