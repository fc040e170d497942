"""Invariants of the serving preprocessing (mri.intake.decode), on real scans."""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mri.intake.decode import decode_gray, inspect_scan
from mri.intake.limits import MAX_SIDE, ScanDecodeError
from mri.model.preprocessing import map_to_scan, prepare
from training.data import DEFAULT_DATA

DATA = DEFAULT_DATA
GLIOMA = DATA / "glioma" / "Tr-glTr_0000.jpg"
NOTUMOR = sorted((DATA / "notumor").iterdir())[0]


def encode(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gray_u8(path: Path = GLIOMA) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


@pytest.mark.parametrize(
    "variant",
    ["gray_png", "rgb_png", "rgba_png", "png_16bit", "rgb_jpeg", "gray_jpeg", "palette_png"],
)
def test_every_export_mode_decodes_to_the_same_gray_scan(variant: str) -> None:
    base = gray_u8()
    data = {
        "gray_png": lambda: encode(base),
        "rgb_png": lambda: encode(np.stack([base] * 3, -1)),
        "rgba_png": lambda: encode(np.dstack([base, base, base, np.full_like(base, 255)])),
        "png_16bit": lambda: encode(base.astype(np.uint16) * 257),
        "rgb_jpeg": lambda: encode(np.stack([base] * 3, -1), "JPEG", quality=98),
        "gray_jpeg": lambda: encode(base, "JPEG", quality=98),
        "palette_png": lambda: encode_palette(base),
    }[variant]()
    gray = decode_gray(data)
    assert gray.shape == base.shape
    assert gray.dtype == np.float32
    assert gray.min() >= 0.0
    assert gray.max() <= 1.0
    assert np.abs(gray - base / 255.0).mean() < 0.01


def encode_palette(base: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(base).convert("P").save(buffer, format="PNG")
    return buffer.getvalue()


def test_transparent_pixels_count_as_background() -> None:
    base = gray_u8()
    alpha = np.zeros_like(base)
    alpha[100:300, 100:300] = 255
    gray = decode_gray(encode(np.dstack([base, base, base, alpha])))
    assert gray[:100].max() == 0.0
    assert np.allclose(gray[150, 150], base[150, 150] / 255.0, atol=0.01)


@pytest.mark.parametrize("side", [128, 300, 512, 1024, 2048])
def test_any_size_gives_the_model_input_size(side: int) -> None:
    base = cv2.resize(gray_u8(), (side, side), interpolation=cv2.INTER_CUBIC)
    prepared = prepare(decode_gray(encode(base)), 224)
    assert prepared.pixels.shape == (224, 224)
    assert prepared.pixels.dtype == np.float32
    assert prepared.pixels.min() >= 0.0
    assert prepared.pixels.max() <= 1.0


def test_model_input_does_not_depend_on_export_resolution() -> None:
    """The same slice exported at 512 px and at 1,536 px reaches the model nearly identical."""
    base = gray_u8()
    large = cv2.resize(base, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    a = prepare(decode_gray(encode(base)), 224).pixels
    b = prepare(decode_gray(encode(large)), 224).pixels
    assert np.abs(a - b).mean() < 0.01


@pytest.mark.parametrize("gain", [0.5, 0.7, 0.85])
def test_brightness_of_the_export_is_normalised(gain: float) -> None:
    """A darker export (no clipping) reaches the model with the same contrast."""
    base = gray_u8().astype(np.float32)
    scaled = np.clip(base * gain, 0, 255).astype(np.uint8)
    a = prepare(decode_gray(encode(base.astype(np.uint8))), 224).pixels
    b = prepare(decode_gray(encode(scaled)), 224).pixels
    assert np.abs(a - b).mean() < 0.03


@pytest.mark.parametrize("path", [GLIOMA, NOTUMOR])
def test_crop_keeps_the_whole_head_and_the_aspect_ratio(path: Path) -> None:
    """Every clearly lit pixel of the scan lies inside the crop; the square pad keeps shapes round."""
    base = gray_u8(path)
    framed = np.zeros((base.shape[0] + 200, base.shape[1] + 500), dtype=np.uint8)
    framed[100:-100, 250:-250] = base
    gray = decode_gray(encode(framed))
    crop = prepare(gray, 224).crop
    lit = np.argwhere(cv2.GaussianBlur(gray, (0, 0), 2) > 0.25)
    assert lit[:, 0].min() >= crop.y0
    assert lit[:, 0].max() < crop.y1
    assert lit[:, 1].min() >= crop.x0
    assert lit[:, 1].max() < crop.x1
    # The frame's black margins are cut away.
    assert crop.x0 >= 200
    assert crop.x1 <= framed.shape[1] - 200


def test_maps_go_back_onto_the_scan_geometry() -> None:
    base = gray_u8(NOTUMOR)
    prepared = prepare(decode_gray(encode(base)), 224)
    ones = map_to_scan(np.ones((7, 7), dtype=np.float32), prepared)
    assert ones.shape == base.shape
    crop = prepared.crop
    assert ones[crop.y0 : crop.y1, crop.x0 : crop.x1].min() > 0.99
    assert ones.sum() == pytest.approx((crop.y1 - crop.y0) * (crop.x1 - crop.x0), rel=0.01)


def test_truncated_jpeg_is_refused_with_a_clear_message() -> None:
    data = GLIOMA.read_bytes()
    with pytest.raises(ScanDecodeError, match="truncated or corrupt"):
        inspect_scan(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"%PDF-1.4 not an image at all" * 10, "not a JPEG or PNG"),
        (b"GIF89a" + bytes(200), "not a JPEG or PNG|not accepted"),
    ],
)
def test_files_that_are_not_scans_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ScanDecodeError, match=message):
        inspect_scan(data)


def test_other_image_formats_are_refused_by_content() -> None:
    buffer = io.BytesIO()
    Image.fromarray(gray_u8()).save(buffer, format="BMP")
    with pytest.raises(ScanDecodeError, match="BMP files are not accepted"):
        inspect_scan(buffer.getvalue())


def test_huge_images_are_refused_before_decoding() -> None:
    # A PNG that declares 20,000 × 20,000 pixels but is tiny on disk (a decompression bomb).
    image = Image.new("1", (20000, 20000))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    with pytest.raises(ScanDecodeError, match=f"largest accepted side is {MAX_SIDE}|too many pixels"):
        inspect_scan(buffer.getvalue())


def test_tiny_images_are_refused() -> None:
    with pytest.raises(ScanDecodeError, match="at least"):
        inspect_scan(encode(np.zeros((20, 20), dtype=np.uint8)))
