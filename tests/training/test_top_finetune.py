"""The CPU fine-tune of the exit flow (training/top_finetune.py): the cut is exact (cached block12
maps through the exit flow give the whole model's logits), training moves only the exit flow
and the head, and a run resumes after its last finished epoch."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mri.model.preprocessing import model_batch, preprocess_scan
from training.data import DEFAULT_DATA
from training.top_finetune import CUT_LAYER, TopFinetuneConfig, exit_flow, fit_exit_flow, shifted_schedule

pytestmark = pytest.mark.model

SCANS = ("glioma/Tr-glTr_0000.jpg", "meningioma/Tr-me_0010.jpg", "notumor/Tr-no_0010.jpg", "pituitary/Tr-pi_0010.jpg")


@pytest.fixture
def model_and_maps():
    import keras

    from mri.model.store import load_classifier

    model, card = load_classifier()  # a fresh copy: the tests train it
    pixels = model_batch([preprocess_scan((DEFAULT_DATA / key).read_bytes(), card.input_size, card.head_crop)
                          for key in SCANS])
    maps = np.asarray(keras.Model(model.inputs, model.get_layer(CUT_LAYER).input).predict_on_batch(pixels))
    return model, pixels, maps


def test_block12_maps_through_the_exit_flow_are_the_whole_models_logits(model_and_maps):
    model, pixels, maps = model_and_maps
    whole = np.asarray(model.predict_on_batch(pixels))
    cut = np.asarray(exit_flow(model).predict_on_batch(maps))
    np.testing.assert_allclose(cut, whole, atol=1e-3)
    # Cached in float16, as top-finetune stores them: the same labels.
    assert (np.asarray(exit_flow(model).predict_on_batch(maps.astype(np.float16).astype(np.float32))).argmax(1)
            == whole.argmax(1)).all()


def test_a_lower_cut_is_exact_too_and_trains_from_its_own_block(model_and_maps):
    import keras

    from mri.card import read_card
    from training.top_finetune import cache_dir, cut_layer

    model, pixels, _maps = model_and_maps
    maps = np.asarray(keras.Model(model.inputs, model.get_layer(cut_layer(11)).input).predict_on_batch(pixels))
    lower = exit_flow(model, first_block=11)
    np.testing.assert_allclose(lower.predict_on_batch(maps), model.predict_on_batch(pixels), atol=1e-3)
    trained = {layer.name for layer in lower.layers if layer.trainable_weights}
    assert {"block11_sepconv1", "block12_sepconv3", "block13_sepconv1", model.layers[-1].name} <= trained
    assert not any(name.startswith("block10") for name in trained)
    # Its cached maps live apart from the exit flow's: the same image list, other maps.
    card = read_card()
    assert cache_dir(card, 11) != cache_dir(card)
    assert cache_dir(card, 11).parent == cache_dir(card).parent
    for outside in (4, 14):
        with pytest.raises(ValueError, match="first_block"):
            cut_layer(outside)


def test_training_moves_only_the_exit_flow_and_resumes_after_the_last_epoch(model_and_maps, tmp_path):
    model, _pixels, maps = model_and_maps
    exit_model = exit_flow(model)
    names = [layer.name for layer in model.layers]
    first_trained = names.index(CUT_LAYER)
    before = [[w.copy() for w in layer.get_weights()] for layer in model.layers]
    targets = np.eye(4, dtype=np.float32)[[1, 2, 3, 0]]  # each scan pushed to another class
    weights = np.ones(4, np.float32)
    config = TopFinetuneConfig(epochs=2, batch_size=2, lr=1e-3)
    key = {"start_model": "v-test"}

    log = fit_exit_flow(exit_model, maps, targets, weights, config, tmp_path, run_key=key, stop_after=1)
    assert [row["epoch"] for row in log] == [1]
    for position, layer in enumerate(model.layers):
        changed = any(not np.array_equal(a, b) for a, b in zip(before[position], layer.get_weights(), strict=True))
        frozen = position < first_trained or type(layer).__name__ == "BatchNormalization"
        assert changed == (bool(layer.get_weights()) and not frozen), layer.name
    after_one = exit_model.predict_on_batch(maps)

    # A new call loads the last finished epoch's weights (not what the model holds now) ...
    exit_model.set_weights([np.zeros_like(w) for w in exit_model.get_weights()])
    fit_exit_flow(exit_model, maps, targets, weights, config, tmp_path, run_key=key, stop_after=0)
    np.testing.assert_allclose(exit_model.predict_on_batch(maps), after_one, atol=1e-6)
    # ... and runs only the epochs left.
    log = fit_exit_flow(exit_model, maps, targets, weights, config, tmp_path, run_key=key)
    assert [row["epoch"] for row in log] == [1, 2]
    assert json.loads((tmp_path / "state.json").read_text())["epochs_done"] == 2
    after_two = exit_model.predict_on_batch(maps)
    assert np.isfinite(after_two).all()
    assert not np.allclose(after_two, after_one)
    # Another configuration, or another start model, is not mixed into this run.
    with pytest.raises(ValueError, match="another configuration"):
        fit_exit_flow(exit_model, maps, targets, weights, replace(config, lr=1e-4), tmp_path, run_key=key)
    with pytest.raises(ValueError, match="another configuration"):
        fit_exit_flow(exit_model, maps, targets, weights, config, tmp_path, run_key={"start_model": "other"})


def test_a_resumed_schedule_goes_on_where_it_stopped():
    import keras

    inner = keras.optimizers.schedules.CosineDecay(1.0, 10)
    shifted = shifted_schedule(inner, 4)
    for step in (0, 3, 6):
        assert float(shifted(step)) == pytest.approx(float(inner(step + 4)))


def test_cached_maps_are_recomputed_for_another_image_list(model_and_maps, tmp_path):
    from mri.card import read_card
    from training.top_finetune import cut_maps

    model, _pixels, maps = model_and_maps
    card = read_card()
    calls: list[str] = []

    def items(keys: tuple[str, ...]) -> list:
        def loader(key: str):
            def load() -> bytes:
                calls.append(key)
                return (DEFAULT_DATA / key).read_bytes()

            return load

        return [(key, loader(key)) for key in keys]

    store = tmp_path / "maps.npy"
    first = np.asarray(cut_maps(model, card, items(SCANS[:2]), store))
    np.testing.assert_allclose(first.astype(np.float32), maps[:2], atol=0.05, rtol=0.01)
    assert calls == list(SCANS[:2])
    np.testing.assert_array_equal(np.asarray(cut_maps(model, card, items(SCANS[:2]), store)), first)
    assert len(calls) == 2  # the same images: read from the cache
    # As many images, other ones: not the stale maps.
    other = np.asarray(cut_maps(model, card, items(SCANS[2:]), store))
    assert calls[2:] == list(SCANS[2:])
    np.testing.assert_allclose(other.astype(np.float32), maps[2:], atol=0.05, rtol=0.01)


def test_a_box_on_the_heatmap_grid_lands_where_map_to_scan_puts_the_grid():
    """box_cells is map_to_scan's inverse: the cells it marks, mapped back onto the scan, cover
    the box and little else (a slice whose head crop is not the whole image, padded to a square)."""
    from mri.intake.decode import decode_gray_bounded
    from mri.model.preprocessing import map_to_scan, prepare
    from training.cam_loss import box_cells
    from training.localization import Box

    gray = decode_gray_bounded((DEFAULT_DATA / "glioma/Tr-glTr_0000.jpg").read_bytes())
    prepared = prepare(gray, 224, "v1")
    crop = prepared.crop
    assert (crop.y1 - crop.y0, crop.x1 - crop.x0) != gray.shape  # the mapping has work to do
    side = max(crop.y1 - crop.y0, crop.x1 - crop.x0)
    cell = side / 14  # a grid cell, in scan pixels
    box = Box(crop.x0 + 2.3 * cell, crop.y0 + 3.6 * cell, crop.x0 + 8.3 * cell, crop.y0 + 8.1 * cell)
    cells = box_cells(prepared, box, 14)
    assert cells.min() >= 0
    assert cells.max() == pytest.approx(1.0)
    back = map_to_scan(cells, prepared)
    margin = int(np.ceil(cell))
    assert back[int(box.y0) + margin : int(box.y1) - margin, int(box.x0) + margin : int(box.x1) - margin].min() > 0.9
    outside, near = back.copy(), 2 * margin
    outside[int(box.y0) - near : int(box.y1) + near, int(box.x0) - near : int(box.x1) + near] = 0
    assert outside.max() == 0
    # The box's area, in cells: its area in scan pixels at the grid's scale.
    assert cells.sum() == pytest.approx(6.0 * 4.5, rel=1e-4)
    # A box off the head crop is not on the model input: nothing of it lands on the padding.
    assert prepared.pad_left > 0  # the crop is taller than wide: black columns left and right
    left_of_crop = Box(0.0, crop.y0 + 2 * cell, float(crop.x0), crop.y0 + 6 * cell)
    assert box_cells(prepared, left_of_crop, 14).sum() == 0
    straddling = Box(crop.x0 - 2 * cell, crop.y0 + 2 * cell, crop.x0 + 3 * cell, crop.y0 + 6 * cell)
    assert box_cells(prepared, straddling, 14).sum() == pytest.approx(3 * 4, rel=1e-4)


def test_boxed_items_are_the_rows_of_the_training_maps_and_a_box_off_the_input_is_left_out():
    """boxed_slices: slices then views, each boxed one at offset + its index (the views of an edge
    tumour that falls into its own piece, brats-2013-pat0001's slice 033, keep their tumour); an
    item whose box is off the head crop is left out, not put on the input's black padding."""
    import io
    from types import SimpleNamespace

    from PIL import Image

    from training.augment import SEQUENCE_REMAPS
    from training.external import EXTERNAL_DATA, read_manifest
    from training.head_refit import remapped_items
    from training.localization import BoxRow, read_boxes
    from training.top_finetune import _file_items, boxed_slices

    by_key = {r.key: r for r in read_manifest(EXTERNAL_DATA)}
    rows = [by_key[k] for k in ("glioma/deepmedic_brats-2013-pat0001-1_flair_033.png",
                                "notumor/deepmedic_brats-2013-pat0001-1_flair_112.png")]
    items = _file_items([EXTERNAL_DATA / r.key for r in rows]) + remapped_items(EXTERNAL_DATA, rows)
    external_rows = rows + [r for r in rows for _ in SEQUENCE_REMAPS]
    card = SimpleNamespace(input_size=224, head_crop="v1")
    boxes = read_boxes(EXTERNAL_DATA / "boxes.csv")
    boxed = boxed_slices(card, items, external_rows, boxes, offset=100, grid=14)
    # Rows 100-101: the two slices; 102-104 the glioma's views; 105-107 the tumour-free slice's.
    assert boxed.rows.tolist() == [100, 102, 103, 104]
    assert boxed.left_out == 0
    assert boxed.classes.tolist() == [0] * 4
    assert boxed.inside.shape == (4, 14, 14)
    assert (boxed.inside.sum(axis=(1, 2)) > 1).all()

    # A head in the middle of the image, its "tumour box" in the empty corner: left out.
    yy, xx = np.mgrid[:256, :256]
    head = np.where((yy - 128) ** 2 + (xx - 128) ** 2 < 70**2, 140, 0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(head).save(buffer, format="PNG")
    corner = SimpleNamespace(key="glioma/corner.png", label="glioma")
    far = {"glioma/corner.png": BoxRow("glioma/corner.png", "glioma", 0.06, 0.06, 0.1, 0.1)}
    item = [("corner", lambda: buffer.getvalue())]
    assert boxed_slices(card, item, [corner], far, offset=0, grid=14).left_out == 1
    near = {"glioma/corner.png": BoxRow("glioma/corner.png", "glioma", 0.5, 0.5, 0.1, 0.1)}
    assert boxed_slices(card, item, [corner], near, offset=0, grid=14).rows.tolist() == [0]


def test_the_localisation_term_pulls_the_glioma_map_into_its_box(model_and_maps, tmp_path):
    import keras
    import tensorflow as tf

    from training.cam_loss import layercam, outside_share
    from training.top_finetune import BoxedSlices

    model, pixels, maps = model_and_maps
    cam_model = exit_flow(model, with_cam=True)
    np.testing.assert_allclose(cam_model.predict_on_batch(maps)[1], model.predict_on_batch(pixels), atol=1e-3)
    inside = np.zeros((1, 14, 14), np.float32)
    inside[0, 8:13, 2:7] = 1.0  # a box off the map's peak

    def outside() -> float:
        with tf.GradientTape() as tape:
            activations, logits = cam_model(maps[:1], training=False)
            score = tf.reduce_sum(logits[:, 0])
        return float(outside_share(layercam(activations, tape.gradient(score, activations)), inside)[0])

    targets = np.asarray(keras.ops.softmax(model.predict_on_batch(pixels)), np.float32)
    weights = np.ones(4, np.float32)
    boxed = BoxedSlices(np.array([0]), inside, np.array([0]))  # the glioma scan, its class
    config = TopFinetuneConfig(epochs=6, batch_size=4, lr=1e-3, localization=5.0, localization_batch=1)
    with pytest.raises(ValueError, match="boxed slices"):
        fit_exit_flow(exit_flow(model), maps, targets, weights, config, tmp_path / "no-cam", boxed=boxed)
    # The term reaches the head only through the map's gradient G = dS/dA (A is computed below
    # the head): a second-order path, which a term taken with G held constant would not have.
    kernel = model.get_layer("head_dense").kernel
    with tf.GradientTape() as outer:
        with tf.GradientTape() as tape:
            activations, logits = cam_model(maps[:1], training=False)
            score = tf.reduce_sum(logits[:, 0])
        share = outside_share(layercam(activations, tape.gradient(score, activations)), inside)
    through_gradient = outer.gradient(share, kernel)
    assert through_gradient is not None
    assert float(tf.reduce_max(tf.abs(through_gradient))) > 0
    before = outside()
    log = fit_exit_flow(cam_model, maps, targets, weights, config, tmp_path, boxed=boxed)
    assert [row["epoch"] for row in log] == list(range(1, 7))
    assert all("outside_box" in row for row in log)
    assert outside() < before - 0.05
    # The classifier's calls are kept (the cross-entropy on the soft targets is still trained).
    assert (cam_model.predict_on_batch(maps)[1].argmax(1) == targets.argmax(1)).all()
