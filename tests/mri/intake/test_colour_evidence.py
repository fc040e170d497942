"""The gate's colour evidence: an MRI slice is grey. A generated colour photo is rejected; grey
scans (real training scans, as grey JPEG, as RGB JPEG with its chroma noise, with a small
coloured annotation; the external set's slices) are not."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mri.intake.colour_evidence import COLOUR_REASON, coloured_share, is_colour_image, with_colour_evidence
from mri.results import AnalysisResult
from mri.vocabulary import CLASS_NAMES
from tests.testkit.scans import colour_photo, real_scan_bytes
from training.external import EXTERNAL_DATA


def _encode(pixels: np.ndarray, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def _result(out_of_distribution: bool = False) -> AnalysisResult:
    return AnalysisResult(
        label="notumor",
        probabilities={name: (0.97 if name == "notumor" else 0.01) for name in CLASS_NAMES},
        heatmap=np.zeros((4, 4), np.float32),
        overlay_png=b"\x89PNG",
        model_version="test",
        ood_score=0.8,
        out_of_distribution=out_of_distribution,
    )


def test_a_colour_photo_is_rejected_with_the_reason() -> None:
    photo = colour_photo()
    assert coloured_share(photo) > 0.5
    assert is_colour_image(photo)
    marked = with_colour_evidence(_result(), photo)
    assert marked.out_of_distribution
    assert marked.ood_reason == COLOUR_REASON
    assert marked.label == "notumor"  # the services store no label for it (rejected)


@pytest.mark.parametrize("label", CLASS_NAMES)
def test_real_grey_scans_pass(label: str) -> None:
    data = real_scan_bytes(label, 0)
    assert coloured_share(data) == 0.0
    result = _result()
    assert with_colour_evidence(result, data) is result


def test_a_grey_scan_saved_as_rgb_jpeg_passes_despite_chroma_noise() -> None:
    gray = np.asarray(Image.open(io.BytesIO(real_scan_bytes("glioma", 1))).convert("L"))
    data = _encode(np.stack([gray] * 3, axis=-1))
    assert Image.open(io.BytesIO(data)).mode == "RGB"
    assert coloured_share(data) < 0.01
    assert not is_colour_image(data)


def test_a_scan_with_a_small_coloured_annotation_passes() -> None:
    gray = np.asarray(Image.open(io.BytesIO(real_scan_bytes("meningioma", 2))).convert("L"))
    rgb = np.stack([gray] * 3, axis=-1).copy()
    h, w = gray.shape
    rgb[10 : 10 + h // 20, 10 : 10 + w // 4] = (255, 220, 0)  # a yellow label, ~1 % of the slice
    assert not is_colour_image(_encode(rgb, "PNG"))


def test_a_heatmap_overlay_is_colour() -> None:
    """An overlay (what the product itself renders) is not a scan to analyse."""
    from mri.model.overlays import render_overlay

    gray = np.asarray(Image.open(io.BytesIO(real_scan_bytes("glioma", 0))).convert("L")).astype(np.float32) / 255
    heat = np.zeros_like(gray)
    heat[100:400, 100:400] = 1.0
    assert is_colour_image(_encode(render_overlay(gray, heat), "PNG"))


def test_an_out_of_distribution_result_is_left_alone() -> None:
    result = _result(out_of_distribution=True)
    assert with_colour_evidence(result, colour_photo()) is result


def test_unreadable_bytes_are_not_judged_here() -> None:
    assert coloured_share(b"DICM not an image") == 0.0


@pytest.mark.skipif(not (EXTERNAL_DATA / "manifest.csv").exists(), reason="external data set not present")
def test_no_external_mri_slice_is_colour() -> None:
    files = sorted(Path(EXTERNAL_DATA).glob("*/*.png"))
    assert len(files) == 600
    assert not any(is_colour_image(p.read_bytes()) for p in files[::5])
