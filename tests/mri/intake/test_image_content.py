"""The upload-time content check: blank, one-colour and pure-noise images are refused with a
message that names the reason; real scans, noisy or small, are not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mri.intake.decode import decode_gray
from mri.intake.image_content import reject_uninformative
from mri.intake.limits import ScanDecodeError
from training.data import DEFAULT_DATA

RNG = np.random.default_rng(0)


def encoded(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, quality=85)
    return out.getvalue()


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((256, 256), np.uint8),  # black
        np.full((300, 200), 255, np.uint8),  # white
        np.full((128, 128, 3), (40, 120, 200), np.uint8),  # one colour
        np.pad(np.full((1, 1), 255, np.uint8), 127),  # a single bright pixel on black
    ],
    ids=["black", "white", "colour", "one-pixel"],
)
def test_blank_images_are_refused_as_blank(pixels: np.ndarray) -> None:
    with pytest.raises(ScanDecodeError, match="blank"):
        reject_uninformative(decode_gray(encoded(pixels)))


@pytest.mark.parametrize(
    ("pixels", "fmt"),
    [
        (RNG.integers(0, 256, (256, 256), dtype=np.uint8), "PNG"),
        (RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8), "PNG"),
        (RNG.integers(0, 256, (512, 512), dtype=np.uint8), "JPEG"),
        (np.clip(RNG.normal(128, 40, (2048, 2048)), 0, 255).astype(np.uint8), "PNG"),
    ],
    ids=["gray", "rgb", "jpeg", "large-gaussian"],
)
def test_pure_noise_is_refused_as_noise(pixels: np.ndarray, fmt: str) -> None:
    with pytest.raises(ScanDecodeError, match="noise"):
        reject_uninformative(decode_gray(encoded(pixels, fmt)))


@pytest.mark.parametrize("name", ["glioma/Tr-glTr_0000.jpg", "notumor/Tr-no_0847.jpg", "pituitary/Tr-pi_0010.jpg"])
def test_real_scans_pass_also_when_noisy_or_small(name: str) -> None:
    gray = np.asarray(Image.open(DEFAULT_DATA / name).convert("L"), dtype=np.float32)
    reject_uninformative(gray / 255.0)
    noisy = np.clip(gray + RNG.normal(0, 25, gray.shape), 0, 255).astype(np.uint8)  # a very noisy export
    reject_uninformative(decode_gray(encoded(noisy)))
    small = np.asarray(Image.fromarray(gray.astype(np.uint8)).resize((96, 96)))
    reject_uninformative(decode_gray(encoded(small, "JPEG")))
