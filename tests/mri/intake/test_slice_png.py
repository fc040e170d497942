"""A DICOM frame's 16-bit PNG (mri/intake/dicom/frames.py), the image every DICOM slice is stored
and analysed as: lossless, however fast its encoding; and the header check the unpack runs on it
(`inspect_header`) keeps `inspect_scan`'s limits."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mri.intake.decode import decode_gray, inspect_header, inspect_scan
from mri.intake.dicom.frames import png16
from mri.intake.limits import MAX_SIDE, ScanDecodeError


@pytest.mark.parametrize("shape", [(64, 64), (97, 130), (256, 256), (512, 384)])
def test_the_slice_png_keeps_every_16_bit_level(shape):
    rng = np.random.default_rng(sum(shape))
    levels = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    gray = levels.astype(np.float64) / 65535.0  # exactly the levels png16 rounds back to
    encoded = png16(gray)
    back = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    assert np.array_equal(back, levels)
    assert np.allclose(decode_gray(encoded), gray, atol=1 / 65535)


def test_the_header_check_reads_what_the_full_check_reads_and_refuses_the_same_sizes():
    ramp = np.tile(np.linspace(0.0, 1.0, 300), (200, 1))
    encoded = png16(ramp)
    assert inspect_header(encoded) == inspect_scan(encoded)
    assert (inspect_header(encoded).width, inspect_header(encoded).height) == (300, 200)
    wide = np.zeros((1, MAX_SIDE + 1), np.uint16)
    too_wide = cv2.imencode(".png", wide)[1].tobytes()
    for check in (inspect_header, inspect_scan):
        with pytest.raises(ScanDecodeError, match="largest accepted side"):
            check(too_wide)
    with pytest.raises(ScanDecodeError, match="empty"):
        inspect_header(b"")
