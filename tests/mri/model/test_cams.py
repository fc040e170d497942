"""Heatmap methods (mri/model/cams.py): the pure rules on hand-made maps, and every method through
the serving runtime on a real scan: the scan's shape, values in [0, 1], a peak that follows the
tumour when the scan moves; `explain` for every class; the model card's heatmap fields."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mri.card import head_crop_of, heatmap_method_of, read_card
from mri.intake.decode import decode_gray
from mri.model.cams import CAM_METHODS, CamSpec, combine, flip_average, layer_map, normalize, parse_method
from mri.model.preprocessing import map_to_scan, prepare
from mri.vocabulary import CLASS_NAMES
from training.data import DEFAULT_DATA
from training.localization import peak

RULES = ("gradcam", "gradcampp", "hirescam", "layercam")


def test_rules_on_hand_made_maps():
    features = np.zeros((4, 4, 2), dtype=np.float32)
    features[1, 2, 0] = 3.0  # channel 0 fires at (1, 2)
    features[3, 0, 1] = 5.0  # channel 1 fires at (3, 0)
    gradients = np.zeros_like(features)
    gradients[..., 0] = 1.0  # only channel 0 speaks for the class
    gradients[..., 1] = -1.0  # channel 1 speaks against it
    for rule in RULES:
        cam = normalize(layer_map(rule, features, gradients))
        assert cam.shape == (4, 4), rule
        assert cam.min() >= 0, rule
        assert cam.max() == 1.0, rule
        assert peak(cam) == (1, 2), rule
        assert cam[3, 0] == 0.0, rule
    # With a gradient that is the same at every position (a GAP head), HiResCAM is Grad-CAM.
    assert np.allclose(layer_map("hirescam", features, gradients), layer_map("gradcam", features, gradients))
    assert not np.any(normalize(np.zeros((3, 3))))
    with pytest.raises(ValueError, match="unknown CAM rule"):
        layer_map("magic", features, gradients)


def test_fusion_and_flip_average():
    coarse = np.zeros((2, 2, 1), dtype=np.float32)
    coarse[0, 0] = 1.0
    fine = np.zeros((8, 8, 1), dtype=np.float32)
    fine[1, 1] = 1.0
    ones = (np.ones_like(coarse), np.ones_like(fine))
    fused = combine(CamSpec("layercam", ("block13", "block14")), [coarse, fine], ones, 32)
    assert fused.shape == (32, 32)
    assert fused.max() == 1.0
    assert peak(fused)[0] < 16
    assert peak(fused)[1] < 16
    left = np.zeros((4, 4), dtype=np.float32)
    left[1, 0] = 1.0
    assert flip_average(left, left[:, ::-1].copy())[1, 0] == 1.0
    assert parse_method("layercam", ["block4", "block14"]).layer_names == (
        "block4_sepconv2_act",
        "block14_sepconv2_act",
    )
    with pytest.raises(ValueError, match="unknown CAM method"):
        parse_method("nope")


@pytest.fixture(scope="module")
def probe():
    from mri.model.analyzer import Analyzer

    layers = tuple(dict.fromkeys(n for spec in CAM_METHODS.values() for n in spec.layer_names))
    return Analyzer(cam="gradcam", probe_layers=layers)


def _embed(gray: np.ndarray, top: int, left: int, shape=(760, 700)) -> np.ndarray:
    canvas = np.zeros(shape, dtype=np.float32)
    canvas[top : top + gray.shape[0], left : left + gray.shape[1]] = gray
    return canvas


@pytest.mark.model
def test_every_method_fits_the_scan_and_follows_a_moved_tumour(probe):
    gray = decode_gray((DEFAULT_DATA / "meningioma/Tr-me_0010.jpg").read_bytes())
    peaks = {}
    for offset in ((0, 0), (230, 170)):
        scan = _embed(gray, *offset)
        prepared = prepare(scan, probe.input_size, probe.head_crop)
        maps = probe.cam_maps(prepared, CLASS_NAMES.index("meningioma"), CAM_METHODS)
        for name, cam in maps.items():
            heatmap = map_to_scan(cam, prepared)
            assert heatmap.shape == scan.shape, name
            assert heatmap.dtype == np.float32, name
            assert heatmap.min() >= 0.0, name
            assert heatmap.max() <= 1.0, name
            assert heatmap.max() > 0.5, f"{name}: no signal"
            peaks.setdefault(name, []).append(np.array(peak(heatmap)))
    for name, (before, after) in peaks.items():
        # The scan moved by (230, 170) px: the map's peak moves with it (to within resampling).
        assert np.abs(after - before - np.array([230, 170])).max() <= 3, (name, before, after)


@pytest.mark.model
def test_explain_for_each_class_has_the_heatmap_shape_rules():
    from workers.runtime import get_analyzer

    analyzer = get_analyzer()
    data = (DEFAULT_DATA / "glioma/Tr-glTr_0000.jpg").read_bytes()
    height, width = np.asarray(Image.open(io.BytesIO(data))).shape[:2]
    maps = {label: analyzer.explain(data, label) for label in CLASS_NAMES}
    for label, heatmap in maps.items():
        assert heatmap.shape == (height, width), label
        assert heatmap.dtype == np.float32, label
        assert heatmap.min() >= 0.0, label
        assert heatmap.max() <= 1.0, label
    result = analyzer.analyze(data)
    assert np.allclose(maps[result.label], result.heatmap, atol=1e-5)
    # Each class's evidence is its own map.
    assert len({np.round(m, 3).tobytes() for m in maps.values()}) == len(CLASS_NAMES)
    with pytest.raises(ValueError, match="unknown class"):
        analyzer.explain(data, "tumour")


def test_model_card_names_its_heatmap_method_and_head_crop():
    card = read_card()
    assert heatmap_method_of(card) in CAM_METHODS
    assert head_crop_of(card) in ("v1", "lit")
    assert heatmap_method_of({}) == "gradcam"  # cards written before these fields
    assert head_crop_of({}) == "v1"
    if "heatmap_localization" in card:
        shipped = card["heatmap_localization"]
        assert shipped["method"] == heatmap_method_of(card)
        assert 0.0 <= shipped["pointing"] <= 1.0
        assert 0.0 <= shipped["energy_in_box"] <= 1.0
        # A method ships only if it points at least as well as every one scored beside it.
        for name, other in shipped.get("baseline", {}).items():
            assert shipped["pointing"] >= other["pointing"], name
