"""A localisation term for the CPU fine-tune (issue 16, item 6: heatmaps on gliomas).

The served heatmap is LayerCAM on block13 (mri/model/cams.py, `layercam-13`): ReLU(Σc ReLU(Gc)⊙Ac)
over the 14×14 maps of `block13_sepconv2_act`, G the gradient of the class logit. On gliomas its
peak often sits mid-brain while the lesion is at the edge (docs/heatmaps.md): the model's glioma
evidence is spread over the brain. The fine-tune can tie it to the lesion where an expert drew
the tumour: for the external set's **train part** (its boxes.csv, the whole-tumour masks'
boxes; the merge's tumor-boxes.csv is for measuring only, its README says so), the term is the
share of the map's mass outside the box, the box drawn on the model input's 14×14 grid
("right for the right reasons", Ross et al. 2017; the attention-mining idea of GAIN, Li et al.
2018). Taking it needs the gradient of a gradient (the map is built from dS/dA), so the term is
computed on a few boxed slices per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mri.model.cams import LAYER_ALIASES
from mri.model.preprocessing import Prepared
from training.localization import Box

CAM_LAYER = LAYER_ALIASES["block13"]  # the served map's layer (14×14 at 224 px)


def box_cells(prepared: Prepared, box: Box, grid: int) -> np.ndarray:
    """The share of each cell of a grid × grid map over the model input that the box (in the
    scan's pixels) covers: the inverse of mri.model.preprocessing.map_to_scan. The part of the
    box outside the head crop is not on the model input: it is left out (never put on the
    square's black padding)."""
    crop = prepared.crop
    scale = _grid_scale(prepared, grid)

    def coverage(start: float, end: float, origin: int, pad: int, extent: int) -> np.ndarray:
        low = np.clip((start - origin + pad) * scale, pad * scale, (pad + extent) * scale)
        high = np.clip((end - origin + pad) * scale, pad * scale, (pad + extent) * scale)
        cells = np.arange(grid)
        return np.clip(np.minimum(cells + 1, high) - np.maximum(cells, low), 0, 1)

    rows = coverage(box.y0, box.y1, crop.y0, prepared.pad_top, crop.y1 - crop.y0)
    columns = coverage(box.x0, box.x1, crop.x0, prepared.pad_left, crop.x1 - crop.x0)
    return np.outer(rows, columns).astype(np.float32)


def box_area_on_grid(prepared: Prepared, box: Box, grid: int) -> float:
    """The whole box's area in grid cells (what box_cells would cover if none of it were cropped)."""
    return max(0.0, box.x1 - box.x0) * max(0.0, box.y1 - box.y0) * _grid_scale(prepared, grid) ** 2


def _grid_scale(prepared: Prepared, grid: int) -> float:
    """Grid cells per scan pixel: the head crop, padded to a square, spans the whole grid."""
    crop = prepared.crop
    return grid / max(crop.y1 - crop.y0, crop.x1 - crop.x0)


def outside_share(cam: Any, inside: Any) -> Any:
    """Per image, the share of the map's mass outside the box (1 for an empty map): the term.
    `cam` and `inside` are (n, h, w) tensors."""
    import tensorflow as tf

    total = tf.reduce_sum(cam, axis=[1, 2])
    held = tf.reduce_sum(cam * inside, axis=[1, 2])
    return 1.0 - tf.math.divide_no_nan(held, total)


def layercam(activations: Any, gradients: Any) -> Any:
    """LayerCAM of a batch, (n, h, w, C) activations and gradients → (n, h, w), not normalised."""
    import tensorflow as tf

    return tf.nn.relu(tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1))


def localised_step(cam_model: Any, optimizer: Any, weight: float) -> Callable[..., tuple[Any, Any]]:
    """One traced training step of `cam_model` (the cut's cached maps → [block13 maps, logits], the
    exit flow's own layers): weighted soft-target cross-entropy on a batch, as Keras reduces it
    (sum of weighted losses / batch size), plus `weight` × the mean outside share of the true
    class's LayerCAM on a batch of boxed slices. Returns (cross-entropy, outside share)."""
    import keras
    import tensorflow as tf

    variables = cam_model.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(x, targets, weights, boxed, inside, classes):
        with tf.GradientTape() as tape:
            _maps, logits = cam_model(x, training=True)
            losses = keras.losses.categorical_crossentropy(targets, logits, from_logits=True)
            cross_entropy = tf.reduce_sum(losses * weights) / tf.cast(tf.shape(x)[0], tf.float32)
            with tf.GradientTape() as inner:
                maps, boxed_logits = cam_model(boxed, training=False)
                score = tf.reduce_sum(boxed_logits * tf.one_hot(classes, tf.shape(boxed_logits)[-1]))
            outside = tf.reduce_mean(outside_share(layercam(maps, inner.gradient(score, maps)), inside))
            total = cross_entropy + weight * outside
        optimizer.apply(tape.gradient(total, variables), variables)
        return cross_entropy, outside

    return step
