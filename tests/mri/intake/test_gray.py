"""mri.intake.gray.area_shrink: the web's NumPy area averaging gives OpenCV's INTER_AREA values
(the workers' and the training code's shrink), so the intake checks' thresholds keep meaning."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mri.intake.gray import area_shrink


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((512, 512), (256, 256)),  # an integer factor: block means
        ((630, 517), (256, 210)),  # fractional on both axes
        ((2048, 1500), (256, 188)),
        ((700, 300), (256, 300)),  # one axis unchanged
        ((5, 7), (2, 3)),
    ],
)
def test_area_shrink_matches_opencv_inter_area(shape: tuple[int, int], size: tuple[int, int]) -> None:
    gray = np.random.default_rng(sum(shape)).random(shape, dtype=np.float32)
    ours = area_shrink(gray, size)
    theirs = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    assert ours.dtype == np.float32
    assert ours.shape == theirs.shape == (size[1], size[0])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_area_shrink_keeps_the_mean_of_a_real_gradient() -> None:
    gray = np.tile(np.linspace(0.0, 1.0, 999, dtype=np.float32), (333, 1))
    shrunk = area_shrink(gray, (250, 100))
    assert abs(float(shrunk.mean()) - float(gray.mean())) < 1e-4
    assert float(shrunk.min()) >= 0.0
    assert float(shrunk.max()) <= 1.0
