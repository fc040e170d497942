"""Scan bytes for tests and benchmarks: real MRI slices from the shared training set (read
only) and small synthetic images. No Django import, so the benchmarks can use it before setup."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import DEFAULT_DATA

# ../shared/datasets/brain-mri/Training beside the checkout, or BRAIN_MRI_DIR (training/data.py).
DATASET = DEFAULT_DATA
LABELS = ("glioma", "meningioma", "notumor", "pituitary")
_PREFIX = {"glioma": "gl", "meningioma": "me", "notumor": "no", "pituitary": "pi"}


def real_scan_path(label: str = "glioma", index: int = 0) -> Path:
    """A real MRI slice of the shared dataset. A missing file fails the test with what to do:
    the tests are never skipped for want of data."""
    path = Path(DATASET) / label / f"Tr-{_PREFIX[label]}Tr_{index:04d}.jpg"
    if not path.is_file():
        pytest.fail(
            f"dataset scan {path} is missing. The tests need the brain MRI training set: check the "
            "repository out beside ../shared, or set BRAIN_MRI_DIR to the Training folder.",
            pytrace=False,
        )
    return path


def real_scan_bytes(label: str = "glioma", index: int = 0) -> bytes:
    return real_scan_path(label, index).read_bytes()


def real_scan_paths(n: int) -> list[Path]:
    """n real scans, the four classes in turn (benchmarks, fault injection)."""
    per_class = [sorted((Path(DATASET) / label).glob("*.jpg")) for label in LABELS]
    if not all(len(files) * 4 >= n for files in per_class):
        raise RuntimeError(f"not enough scans under {DATASET} (set BRAIN_MRI_DIR)")
    return [per_class[i % 4][i // 4] for i in range(n)]


def png_bytes(size: tuple[int, int] = (96, 80), seed: int = 0) -> bytes:
    """A small gray PNG of noise that passes the content checks."""
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0]), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return out.getvalue()
