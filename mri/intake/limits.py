"""What an upload may be: the formats and size limits every decoder checks (JPEG/PNG here, DICOM
in mri.intake.dicom), and the one error they raise. Nothing imported: the web reads these
constants (forms, upload handlers) without loading any image library."""
from __future__ import annotations

ACCEPTED_FORMATS = ("JPEG", "PNG")
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MIN_SIDE = 64
MAX_SIDE = 8192
# Far above any real slice (the training scans are at most 1920 px a side), and checked from the
# header before any pixel is decoded.
MAX_PIXELS = 40_000_000
# A progressive JPEG cannot be decoded in one pass: the decoder keeps every DCT coefficient of
# the image (2 bytes per pixel and colour component), so its pixel cap is lower.
MAX_PROGRESSIVE_PIXELS = 16_000_000
# Workers analyse a copy whose longest side is at most this (box-averaged down, before the head
# crop): the model sees 224 px, and memory stays bounded whatever the upload. Every training
# scan is smaller, so for them the serving path is exactly `prepare(decode_gray(data))`.
WORK_SIDE = 2048


class ScanDecodeError(ValueError):
    """The upload is not a scan we can read; the message is fit to show the user."""
