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
