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

import numpy as np
from PIL import Image

from workers.results import AnalysisResult

CHROMA_LEVEL = 0.10  # ~25 of 255 grey levels: far above JPEG chroma noise on a grey image
MAX_COLOURED_SHARE = 0.05  # more than 5 % clearly coloured pixels: not a grey MRI slice
CHECK_SIDE = 256
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def coloured_share(data: bytes) -> float:
    """Share of pixels with chroma above CHROMA_LEVEL (0 for a grey-mode image); 0 for bytes
    Pillow cannot open (DICOM: its stored rendering is a 16-bit grey PNG)."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.mode in GREY_MODES:
            return 0.0
        image.draft("RGB", (CHECK_SIDE, CHECK_SIDE))  # JPEG: decode at a reduced scale
        image = image.convert("RGB")
        image.thumbnail((CHECK_SIDE, CHECK_SIDE))
    except Exception:
        return 0.0
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    chroma = pixels.max(axis=2) - pixels.min(axis=2)
    return float((chroma > CHROMA_LEVEL).mean())


def is_colour_image(data: bytes) -> bool:
    return coloured_share(data) > MAX_COLOURED_SHARE


COLOUR_REASON = (
    "This is a colour image; MRI slices are grey (red, green and blue alike): it does not look like "
    "a brain MRI slice, so no tumour label is given."
)


def with_colour_evidence(result: AnalysisResult, data: bytes) -> AnalysisResult:
    """The result, marked out of distribution (with the reason) when the image is in colour."""
    if result.out_of_distribution or not is_colour_image(data):
        return result
    return dataclasses.replace(result, out_of_distribution=True, ood_reason=COLOUR_REASON)
