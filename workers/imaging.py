"""Decoding and preprocessing of uploaded scans: the one path shared by serving and evaluation.

No TensorFlow here: the web process imports this module to validate uploads by content.

The model sees a scan the same way whatever exported it: decoded to one gray channel in [0, 1]
(8- or 16-bit, RGB, RGBA), cropped to the head's bounding box so framing and margins do not
matter, padded to a square so the aspect ratio is kept, contrast-stretched between robust
percentiles, and resized to the model's input size.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFile

from workers.scan_guard import ContainerError, check_container

CLASS_NAMES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")

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

# A truncated file must be an error, not a half-gray picture that gets a confident label.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ScanDecodeError(ValueError):
    """The upload is not a scan we can read; the message is fit to show the user."""


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


def decode_gray(data: bytes) -> np.ndarray:
    """Decode a JPEG/PNG (or a single-frame DICOM, by workers.dicom) to a float32 gray image
    in [0, 1], at the file's own size."""
    from workers import dicom  # imports this module: imported here, not at the top

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
    from workers import dicom  # imports this module: imported here, not at the top

    if dicom.looks_like_dicom(data):  # decoded by workers.dicom (its own limits), then bounded
        gray = decode_gray(data)
        factor = math.ceil(max(gray.shape) / max_side)
        if factor == 1:
            return gray
        size = (math.ceil(gray.shape[1] / factor), math.ceil(gray.shape[0] / factor))
        return np.clip(cv2.resize(gray, size, interpolation=cv2.INTER_AREA), 0.0, 1.0)
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
        parts.append(cv2.resize(gray, (out_width, rows), interpolation=cv2.INTER_AREA))
    return np.clip(np.vstack(parts), 0.0, 1.0)


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
