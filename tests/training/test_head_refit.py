"""Model v3's head re-fit (training/head_refit.py): the packed ensemble, the weights, the
sequence remaps, and a wider head surviving the model folder's round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.augment import SEQUENCE_REMAPS, head_mask, sequence_remap
from training.external import ExternalSlice
from training.head_refit import cell_weights, pack_heads


def _forward(dense: list[np.ndarray], logits: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ dense[0] + dense[1], 0.0) @ logits[0] + logits[1]


def test_the_packed_head_answers_the_mean_of_the_heads_logits():
    rng = np.random.default_rng(0)
    heads = [
        ([rng.normal(size=(32, 8)), rng.normal(size=8)], [rng.normal(size=(8, 4)), rng.normal(size=4)])
        for _ in range(5)
    ]
    x = rng.normal(size=(10, 32))
    dense, logits = pack_heads(heads)
    assert dense[0].shape == (32, 40)
    assert logits[0].shape == (40, 4)
    expected = np.mean([_forward(d, lg, x) for d, lg in heads], axis=0)
    np.testing.assert_allclose(_forward(dense, logits, x), expected, rtol=1e-10, atol=1e-10)


def _slice(label: str, sequence: str) -> ExternalSlice:
    return ExternalSlice(f"{label}/x.png", label, sequence, "g", "s", 0.5, True)


def test_every_label_sequence_cell_weighs_the_same():
    rows = [_slice("glioma", "flair")] * 30 + [_slice("glioma", "t2")] * 3 + [_slice("notumor", "t1c")] * 7
    weights = cell_weights(rows, total=300.0)
    assert weights.sum() == pytest.approx(300.0)
    for cell in {r.cell for r in rows}:
        assert weights[[r.cell == cell for r in rows]].sum() == pytest.approx(100.0)


def _head_with_lesion() -> np.ndarray:
    yy, xx = np.mgrid[:128, :128]
    image = np.zeros((128, 128), np.uint8)
    head = (yy - 64) ** 2 + (xx - 64) ** 2 < 50**2
    image[head] = 90
    image[(yy - 50) ** 2 + (xx - 70) ** 2 < 10**2] = 230  # a bright lesion
    return image


def test_a_remapped_slice_keeps_its_background_black_and_changes_the_look_inside():
    image = _head_with_lesion()
    for kind in SEQUENCE_REMAPS:
        out = sequence_remap(image, kind, np.random.default_rng(3))
        assert out.dtype == np.uint8
        assert out.shape == image.shape
        assert out[:5, :5].max() == 0, kind
    inverted = sequence_remap(image, "invert", np.random.default_rng(3))
    assert inverted[50, 70] < inverted[80, 40]  # the bright lesion is now darker than the brain around it
    with pytest.raises(ValueError, match="unknown sequence remap"):
        sequence_remap(image, "blur", np.random.default_rng(0))


def test_the_head_mask_of_a_head_touching_the_corner_keeps_the_background_out_and_fills_holes():
    """The fill that finds the head's holes starts outside the image: a head cut by the top-left
    corner (a zoomed slice) does not make the whole image "head", and a dark hole inside the
    head (a ventricle) is still part of it."""
    yy, xx = np.mgrid[:128, :128]
    image = np.zeros((128, 128), np.uint8)
    image[(yy - 30) ** 2 + (xx - 30) ** 2 < 55**2] = 120  # the head runs off the top-left corner
    image[(yy - 35) ** 2 + (xx - 35) ** 2 < 8**2] = 0  # a dark hole inside it
    mask = head_mask(image)
    assert mask[0, 0]
    assert mask[35, 35]  # the hole is filled
    assert not mask[120, 120]  # the background stays outside
    assert not sequence_remap(image, "invert", np.random.default_rng(0))[120, 120]


def test_the_head_mask_keeps_every_part_of_a_brain_that_falls_apart_but_not_specks():
    """A skull-stripped slice near the vertex is several pieces; a tumour can be one of them
    (brats-2013-pat0001, slice 033: its views had the tumour blanked). Specks stay out."""
    yy, xx = np.mgrid[:128, :128]
    image = np.zeros((128, 128), np.uint8)
    image[(yy - 60) ** 2 + (xx - 45) ** 2 < 30**2] = 120  # the larger piece
    image[(yy - 60) ** 2 + (xx - 100) ** 2 < 12**2] = 200  # a separate piece: the bright tumour
    image[5:7, 120:122] = 120  # a 4-pixel speck (0.1 % of the larger piece)
    mask = head_mask(image)
    assert mask[60, 45]
    assert mask[60, 100]
    assert not mask[5, 120]
    assert sequence_remap(image, "gamma", np.random.default_rng(0))[60, 100] > 0  # kept, not blanked


@pytest.mark.model
def test_a_wider_head_survives_the_model_folders_round_trip(tmp_path: Path):
    from mri.card import write_card
    from mri.model.definition import build_classifier
    from mri.model.store import load_classifier, save_weights_fp16
    from training.train import architecture_of

    model = build_classifier(71, None, head_units=512)
    card = {"version": "wide", "input_size": 71, "head_units": 512, "architecture": architecture_of(model)}
    card["weights_sha256"] = save_weights_fp16(model, tmp_path)
    write_card(tmp_path, card)
    loaded, read = load_classifier(tmp_path)
    assert read.head_units == 512
    assert loaded.get_layer("head_dense").units == 512
    assert "Dense(512, ReLU)" in json.loads((tmp_path / "model_card.json").read_text())["architecture"]
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 71, 71, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0), model.predict(pixels, verbose=0), atol=0.05)


@pytest.mark.model
def test_the_tools_that_rebuild_the_shipped_model_take_its_head_width():
    """The benches and the GPU script rebuild the classifier from the shipped weights; a head
    wider than 256 (v3: 1280) must not break them."""
    from bench.analyze_speed import build_reference_model
    from bench.model_variants import at_input_size
    from mri.model.store import load_classifier, verified_weights
    from scripts.gpu_v2 import serving_parts

    model, card = load_classifier()
    units = model.get_layer("head_dense").units
    assert units == card.head_units
    assert build_reference_model(model).get_layer("head_dense").units == units
    assert at_input_size(model, 256).get_layer("head_dense").units == units
    from mri.card import DEFAULT_MODEL_DIR

    _backbone, head, _params = serving_parts(verified_weights(DEFAULT_MODEL_DIR, card), 224)
    assert head.get_layer("head_dense").units == units


@pytest.mark.model
def test_head_refit_end_to_end_on_a_tiny_start_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A random 71 px start model, 2 scans per class, a few external slices: the candidate keeps
    the backbone bit for bit, packs 2 heads into one twice as wide, copies the start model's
    split, records what it trained on, and never reads the external validation part."""
    import csv

    import training.ood_features
    from mri.card import read_card, write_card
    from mri.model.definition import build_classifier
    from mri.model.store import load_classifier, save_weights_fp16
    from training.data import DEFAULT_DATA, load_split
    from training.external import EXTERNAL_DATA, EXTERNAL_SPLIT_FILE, SOURCE_TERMS, load_external_split
    from training.head_refit import HeadRefitConfig, head_refit

    monkeypatch.setattr(training.ood_features, "CACHE_DIR", tmp_path / "cache")
    start = tmp_path / "start"
    model = build_classifier(71, None)
    write_card(start, {"version": "start", "input_size": 71, "weights_sha256": save_weights_fp16(model, start)})
    split = load_split()
    tiny = {
        part: [next(k for k in split[part] if k.startswith(f"{label}/")) for label in ("glioma", "notumor")]
        for part in ("train", "val")
    }
    (start / "split.json").write_text(json.dumps(tiny))

    full = load_external_split(EXTERNAL_SPLIT_FILE)
    train_keys = [k for k in full["train"] if "_flair_" in k][:2] + [k for k in full["train"] if "_t2_" in k][:1]
    val_keys = full["val"][:2]
    external = tmp_path / "external"
    with open(EXTERNAL_DATA / "manifest.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["file"] in set(train_keys + val_keys)]
    external.mkdir()
    with open(external / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for key in train_keys + val_keys:
        (external / key).parent.mkdir(parents=True, exist_ok=True)
        (external / key).symlink_to(EXTERNAL_DATA / key)
    split_file = tmp_path / "external-split.json"
    split_file.write_text(json.dumps({"train": train_keys, "val": val_keys, "train_groups": ["g1"]}))

    out = tmp_path / "candidate"
    card = head_refit(start, out, HeadRefitConfig(heads=2, epochs=2), data=DEFAULT_DATA, external=external,
                      external_split=split_file)  # fmt: skip

    loaded, read = load_classifier(out)
    assert read.head_units == card["head_units"] == 512
    assert read["data"]["external_train_groups"] == ["g1"]
    assert read["data"]["external_train_slices"] == 3
    used = {r["source"] for r in rows if r["file"] in train_keys}
    assert [s for s in read["data"]["trained_on_sources"] if s.startswith("brain-mri-external")] == [
        f"brain-mri-external train part: {SOURCE_TERMS[source]}" for source in sorted(used)
    ]
    assert json.loads((out / "split.json").read_text()) == tiny
    for before, after in zip(model.layers, loaded.layers, strict=True):
        if before.name not in ("head_dense", "logits"):
            for a, b in zip(before.get_weights(), after.get_weights(), strict=True):
                np.testing.assert_array_equal(np.float16(a), np.float16(b))
    with np.load(tmp_path / "cache" / "external-start.npz") as store:
        read_keys = {Path(str(k)).relative_to(external).as_posix() for k in store["keys"]}
    assert read_keys == set(train_keys)  # the validation part was never read
    assert read_card(out).version != "start"
