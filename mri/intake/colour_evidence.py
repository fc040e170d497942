"""Evidence for the out-of-distribution gate that needs no model: an MRI slice is grey.

MR magnitude images have one value per pixel; every export of them (DICOM rendering, PACS
screenshot, JPEG) is grey: red = green = blue, up to the JPEG's chroma noise of a few levels.
A colour photograph, a chart or a heatmap overlay is not. The measure is the share of pixels
whose chroma (max − min of R, G, B, in [0, 1]) exceeds CHROMA_LEVEL, on a copy shrunk to at
most CHECK_SIDE px (cheap: a few milliseconds). A slice with a small coloured annotation (a
ruler, a label) stays well under MAX_COLOURED_SHARE; a colour photo is far above it.

Figures (`python -m training ood colour-evidence`, docs/model.md): 0 of the 600 external MRI
slices and 0 of the training scans rejected by it; the share of colour-photo images it rejects
is reported per family of the development corpus.
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
from PIL import Image

from mri.results import AnalysisResult

CHROMA_LEVEL = 0.10  # ~25 of 255 grey levels: far above JPEG chroma noise on a grey image
MAX_COLOURED_SHARE = 0.05  # more than 5 % clearly coloured pixels: not a grey MRI slice
CHECK_SIDE = 256
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def coloured_share(data: bytes) -> float:
    """Share of pixels with chroma above CHROMA_LEVEL (0 for a grey-mode image); 0 for bytes
    Pillow cannot open (DICOM: its stored rendering is a 16-bit grey PNG). Sampled on a grid
    of at most CHECK_SIDE per side, a band of rows at a time, so a huge upload costs no copy
    of itself (a JPEG is decoded at reduced scale directly)."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.mode in GREY_MODES:
            return 0.0
        if image.format == "JPEG":
            image.draft("RGB", (CHECK_SIDE, CHECK_SIDE))
        image.load()
    except Exception:
        return 0.0
    width, height = image.size
    step = max(1, math.ceil(max(width, height) / CHECK_SIDE))
    band = step * 64
    coloured = total = 0
    for top in range(0, height, band):
        rows = np.asarray(image.crop((0, top, width, min(height, top + band))).convert("RGB"))[::step, ::step]
        pixels = rows.astype(np.float32) / 255.0
        chroma = pixels.max(axis=2) - pixels.min(axis=2)
        coloured += int((chroma > CHROMA_LEVEL).sum())
        total += chroma.size
    return coloured / total if total else 0.0


def is_colour_image(data: bytes) -> bool:
    return coloured_share(data) > MAX_COLOURED_SHARE


COLOUR_REASON = (
    "This is a colour image; MRI slices are grey (red, green and blue alike): it does not look like "
    "a brain MRI slice, so no tumour label is given."
)


def with_colour_evidence(result: AnalysisResult, data: bytes) -> AnalysisResult:
    """The result, marked out of distribution (with the reason) when the image is in colour."""
    if getattr(result, "out_of_distribution", False) or not is_colour_image(data):
        return result
    return dataclasses.replace(result, out_of_distribution=True, ood_reason=COLOUR_REASON)
