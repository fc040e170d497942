"""Workers analyse a bounded copy of a huge scan, and exactly the same pixels as before for every
scan of ordinary size: the model was trained on `prepare(decode_gray(...))`, so for the training
set's scans (all within WORK_SIDE) the serving path must not change by a single bit."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mri.intake.decode import decode_gray, decode_gray_bounded
from mri.intake.limits import WORK_SIDE
from mri.model.preprocessing import prepare, preprocess_scan
from training.data import DEFAULT_DATA


def _sample_scans() -> list[Path]:
    """Every 60th training scan of each class, plus every scan over 1,000 px (the largest)."""
    picked: list[Path] = []
    for label in ("glioma", "meningioma", "notumor", "pituitary"):
        files = sorted((DEFAULT_DATA / label).glob("*.jpg"))
        picked += files[::60]
    for path in sorted(DEFAULT_DATA.glob("*/*.jpg")):
        with Image.open(path) as image:
            if max(image.size) > 1000:
                picked.append(path)
    return picked


def test_ordinary_scans_are_decoded_and_prepared_exactly_as_in_training() -> None:
    scans = _sample_scans()
    assert len(scans) >= 90
    largest = 0
    for path in scans:
        data = path.read_bytes()
        full = decode_gray(data)
        largest = max(largest, max(full.shape))
        assert np.array_equal(decode_gray_bounded(data), full), path.name
        assert np.array_equal(preprocess_scan(data, 224).pixels, prepare(full, 224).pixels), path.name
    assert 1900 <= largest <= WORK_SIDE  # the training set's largest scans were among them


def _upscaled(path: Path, side: int, mode: str) -> bytes:
    with Image.open(path) as image:
        big = image.convert("L").resize((side, side * 3 // 4), Image.Resampling.BICUBIC).convert(mode)
    out = io.BytesIO()
    big.save(out, format="PNG", compress_level=1)
    return out.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_huge_scans_are_analysed_on_a_bounded_copy_that_looks_the_same(mode: str) -> None:
    path = DEFAULT_DATA / "meningioma" / "Tr-meTr_0000.jpg"
    huge = _upscaled(path, 4800, mode)
    gray = decode_gray_bounded(huge)
    assert max(gray.shape) <= WORK_SIDE
    assert abs(gray.shape[1] / gray.shape[0] - 4 / 3) < 0.01  # aspect ratio kept
    assert gray.dtype == np.float32
    assert 0.0 <= gray.min() <= gray.max() <= 1.0
    # What the model sees is the picture the full-size decode would have given it.
    full = prepare(decode_gray(huge), 224).pixels
    bounded = prepare(gray, 224).pixels
    assert np.abs(bounded - full).mean() < 0.01


@pytest.mark.model
def test_a_huge_upload_gets_the_same_reading_as_the_original() -> None:
    from workers.runtime import get_analyzer

    analyzer = get_analyzer()
    for label, name in (("glioma", "Tr-glTr_0001.jpg"), ("pituitary", "Tr-piTr_0002.jpg")):
        path = DEFAULT_DATA / label / name
        original = analyzer.analyze(_upscaled(path, 1600, "L"))  # within WORK_SIDE: as trained
        huge = analyzer.analyze(_upscaled(path, 4800, "L"))
        assert huge.label == original.label == label
        assert abs(huge.probabilities[label] - original.probabilities[label]) < 0.1
        assert max(huge.heatmap.shape) <= WORK_SIDE
