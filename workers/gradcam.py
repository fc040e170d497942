"""Grad-CAM maps and their rendering, kept apart: computing the map needs the model, drawing
it needs only pixels (the shape of jacobgil/pytorch-grad-cam's base_cam / utils.image)."""
from __future__ import annotations

import cv2
import numpy as np


def gradcam_map(features: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM from one image's feature maps (h, w, C) and d(class score)/d(features).

    Channel weights are the spatially averaged gradients; the map is the ReLU of the weighted
    sum, scaled to [0, 1] (all zeros when nothing speaks for the class).
    """
    weights = gradients.reshape(-1, gradients.shape[-1]).mean(axis=0)
    cam = np.maximum((features * weights).sum(axis=-1), 0.0)
    peak = float(cam.max())
    return (cam / peak).astype(np.float32) if peak > 0 else np.zeros_like(cam, dtype=np.float32)


def render_overlay(gray: np.ndarray, heatmap: np.ndarray, strength: float = 0.55) -> np.ndarray:
    """RGB uint8: the scan in gray, tinted with the JET colour map where the heatmap is high.

    Opacity follows the heatmap, so cold regions keep the scan's own pixels instead of the
    uniform blue cast of a flat 50/50 blend.
    """
    base = np.repeat((np.clip(gray, 0, 1) * 255.0)[..., None], 3, axis=-1)
    colours = cv2.applyColorMap((np.clip(heatmap, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    alpha = (strength * np.clip(heatmap, 0, 1))[..., None]
    return (base * (1.0 - alpha) + colours.astype(np.float32) * alpha + 0.5).astype(np.uint8)


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image (fast compression: overlays are rendered per scan)."""
    ok, buffer = cv2.imencode(".png", rgb[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("could not encode the overlay as PNG")
    return buffer.tobytes()
