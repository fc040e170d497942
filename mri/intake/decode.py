"""Decoding of uploaded scans (JPEG, PNG, single-frame DICOM) to float gray in [0, 1]: the one
path shared by serving and evaluation. The model's own preprocessing of the decoded scan is
mri.model.preprocessing.

No TensorFlow and no OpenCV at import: the web process imports this module to validate uploads
by content; a scan longer than WORK_SIDE is box-averaged in NumPy (mri.intake.gray.area_shrink).
"""
from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFile

from mri.intake import dicom
from mri.intake.gray import area_shrink, to_gray
from mri.intake.limits import (
    ACCEPTED_FORMATS,
    MAX_PIXELS,
    MAX_PROGRESSIVE_PIXELS,
    MAX_SIDE,
    MAX_UPLOAD_BYTES,
    MIN_SIDE,
    WORK_SIDE,
    ScanDecodeError,
)
from mri.intake.scan_guard import ContainerError, check_container

# A truncated file must be an error, not a half-gray picture that gets a confident label.
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class ScanInfo:
    format: str
    width: int
    height: int
    mode: str


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ScanDecodeError("The file is empty.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ScanDecodeError(
            f"The file is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB."
        )
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ScanDecodeError("The image has too many pixels to be a scan.") from exc
    except Exception as exc:  # PIL raises several types for unknown content
        magic = "PNG" if data.startswith(b"\x89PNG") else "JPEG" if data.startswith(b"\xff\xd8") else None
        if magic is None:
            raise ScanDecodeError("The file is not a JPEG or PNG image.") from exc
        try:  # a JPEG/PNG Pillow would not open: say what is wrong with it
            check_container(data, magic)
        except ContainerError as problem:
            raise ScanDecodeError(problem.args[0]) from exc
        raise ScanDecodeError("The image is corrupt and cannot be read.") from exc
    if image.format not in ACCEPTED_FORMATS:
        raise ScanDecodeError(
            f"{image.format or 'This'} files are not accepted; upload a JPEG or PNG scan."
        )
    width, height = image.size
    if max(width, height) > MAX_SIDE:
        raise ScanDecodeError(
            f"The image is {width}×{height} pixels; the largest accepted side is {MAX_SIDE}."
        )
    if width * height > MAX_PIXELS:
        raise ScanDecodeError(
            f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} Mpx); "
            f"at most {MAX_PIXELS // 1_000_000} Mpx are accepted."
        )
    if image.mode == "CMYK":
        raise ScanDecodeError(
            "CMYK images (a print export) are not accepted: their gray levels are not the scan's. "
            "Export the scan as grayscale or RGB."
        )
    progressive = image.format == "JPEG" and bool(image.info.get("progressive") or image.info.get("progression"))
    if progressive and width * height > MAX_PROGRESSIVE_PIXELS:
        raise ScanDecodeError(
            f"The image is a progressive JPEG of {width * height / 1e6:.0f} Mpx; progressive JPEGs are accepted "
            f"up to {MAX_PROGRESSIVE_PIXELS // 1_000_000} Mpx. Export it as a baseline JPEG or PNG."
        )
    if min(width, height) < MIN_SIDE:
        raise ScanDecodeError(
            f"The image is {width}×{height} pixels; a scan needs at least {MIN_SIDE} per side."
        )
    return image


def _load_pixels(image: Image.Image) -> None:
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ScanDecodeError("The image has too many pixels to be a scan.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ScanDecodeError("The image is truncated or corrupt and cannot be read.") from exc


def _check_structure(data: bytes, image: Image.Image) -> None:
    try:
        check_container(data, image.format)
    except ContainerError as exc:
        raise ScanDecodeError(exc.args[0]) from exc


def inspect_scan(data: bytes) -> ScanInfo:
    """Validate an upload by content without holding its pixels (the web process calls this):
    header limits first, then the container's structure (a PNG's whole pixel stream is inflated
    and checked in bounded steps), then a JPEG is decoded at 1/8 scale, which reads every
    coded block. Memory stays near the file's own size whatever the header promises."""
    image = _open(data)
    _check_structure(data, image)
    info = ScanInfo(format=image.format, width=image.size[0], height=image.size[1], mode=image.mode)
    if image.format == "JPEG":
        image.draft("L", (max(1, info.width // 8), max(1, info.height // 8)))
        _load_pixels(image)
    return info


def inspect_header(data: bytes) -> ScanInfo:
    """`inspect_scan`'s header limits (format, sides, pixels, file size) without its walk of the
    container: for a PNG this process encoded itself (a decoded DICOM frame, by OpenCV), whose
    structure is not in question. Measured: the walk was 1.8 ms of a slice's ~15 ms unpack."""
    image = _open(data)
    return ScanInfo(format=image.format, width=image.size[0], height=image.size[1], mode=image.mode)


def decode_gray(data: bytes) -> np.ndarray:
    """Decode a JPEG/PNG (or a single-frame DICOM, by mri.intake.dicom) to a float32 gray image
    in [0, 1], at the file's own size."""
    if dicom.looks_like_dicom(data):
        frames = dicom.decode_dicom(data)
        if len(frames) != 1:
            raise ScanDecodeError(f"The DICOM file has {len(frames)} frames; analyse them one at a time.")
        return frames[0]
    image = _open(data)
    _load_pixels(image)
    return to_gray(image)


def decode_gray_bounded(data: bytes, max_side: int = WORK_SIDE) -> np.ndarray:
    """What a worker analyses: `decode_gray`, except that a scan longer than `max_side` is
    box-averaged down to at most that first (a JPEG is decoded at reduced scale directly), so
    neither the float copy nor the preprocessing is ever the size of a huge upload. A scan
    within `max_side` gives exactly `decode_gray(data)`."""
    if dicom.looks_like_dicom(data):  # decoded by mri.intake.dicom (its own limits), then bounded
        gray = decode_gray(data)
        factor = math.ceil(max(gray.shape) / max_side)
        if factor == 1:
            return gray
        size = (math.ceil(gray.shape[1] / factor), math.ceil(gray.shape[0] / factor))
        return np.clip(area_shrink(gray, size), 0.0, 1.0)
    image = _open(data)
    _check_structure(data, image)
    if max(image.size) <= max_side:
        _load_pixels(image)
        return to_gray(image)
    if image.format == "JPEG":
        # DCT scaling by 1/2, 1/4 or 1/8 while decoding, never below the bounded size.
        scale = max(image.size) / max_side
        image.draft(image.mode, (math.ceil(image.size[0] / scale), math.ceil(image.size[1] / scale)))
    _load_pixels(image)
    factor = math.ceil(max(image.size) / max_side)
    return to_gray(image) if factor == 1 else _reduced_gray(image, factor)


class Decoded(NamedTuple):
    """A scan decoded once by `decode_gray_bounded`, and what that took, for a caller that uses
    the pixels twice (a study lane: the burnt-in text check, then the analysis)."""

    gray: np.ndarray
    ms: float


def decode_timed(data: bytes) -> Decoded:
    """`decode_gray_bounded(data)` with its cost in ms; raises what it raises."""
    started = time.perf_counter()
    gray = decode_gray_bounded(data)
    return Decoded(gray, (time.perf_counter() - started) * 1000)


def _reduced_gray(image: Image.Image, factor: int) -> np.ndarray:
    """`to_gray(image)` averaged over factor×factor blocks, a band of rows at a time: no copy of
    the whole image (not even Pillow's premultiplied one for RGBA) is ever made."""
    width, height = image.size
    out_width = math.ceil(width / factor)
    band = factor * 64
    parts = []
    for top in range(0, height, band):
        gray = to_gray(image.crop((0, top, width, min(height, top + band))))
        rows = math.ceil(gray.shape[0] / factor)
        parts.append(area_shrink(gray, (out_width, rows)))
    return np.clip(np.vstack(parts), 0.0, 1.0)
