"""The classifier's architecture, shared by training and serving.

Xception from ImageNet with a small head: global average pooling → dense (ReLU) → dropout →
4 logits. The network takes raw 0-255 pixels: Xception's own scaling is its first layer, so
nothing outside the model has to remember it. The backbone is built flat (not nested) so its
layers, `block14_sepconv2_act` included, are reachable by name for Grad-CAM.
"""
from __future__ import annotations

import re
from typing import Any

from mri.vocabulary import CLASS_NAMES

CAM_LAYER = "block14_sepconv2_act"
HEAD_UNITS = 256


def build_classifier(
    input_size: int, backbone_weights: str | None = None, dropout: float = 0.3, head_units: int = HEAD_UNITS
) -> Any:
    """Return an uncompiled Keras model mapping (N, size, size, 3) pixels to 4 logits.

    head_units: width of the head's hidden layer (the card's `head_units`; a head re-fitted as
    an ensemble of k heads is one hidden layer k × 256 wide, training/head_refit.py).

    backbone_weights: None (random init) or a path to ImageNet Xception `include_top=False`
    weights (`.weights.h5`, see ../shared/weights). "imagenet" downloads them (needs internet).
    """
    if input_size < 71:
        raise ValueError(f"Xception needs an input of at least 71 px, got {input_size}")
    import keras

    inputs = keras.Input((input_size, input_size, 3), name="pixels")
    scaled = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="xception_scaling")(inputs)
    backbone = keras.applications.Xception(
        include_top=False, weights=None, input_tensor=scaled, input_shape=(input_size, input_size, 3)
    )
    if backbone_weights is not None:
        if backbone_weights == "imagenet":
            reference = keras.applications.Xception(include_top=False, weights="imagenet")
        else:
            reference = keras.applications.Xception(
                include_top=False, weights=backbone_weights, input_shape=(input_size, input_size, 3)
            )
        backbone.set_weights(reference.get_weights())
    # BatchNorm stays in inference mode for good: fine-tuning on small batches must not
    # overwrite the ImageNet statistics (keras-io transfer learning guide).
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    features = backbone.get_layer(CAM_LAYER).output
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    return keras.Model(inputs, head(pooled, head_units, dropout), name="brain_xception")


def head(pooled: Any, units: int = HEAD_UNITS, dropout: float = 0.3) -> Any:
    """The classifier's head on pooled features: Dense(units, ReLU) → Dropout → 4 logits (also
    fitted on its own over cached features, training/head_refit.py)."""
    import keras

    hidden = keras.layers.Dense(units, activation="relu", name="head_dense")(pooled)
    hidden = keras.layers.Dropout(dropout, name="head_dropout")(hidden)
    return keras.layers.Dense(len(CLASS_NAMES), name="logits", dtype="float32")(hidden)


HEAD_LAYERS = ("pixels", "head_pool", "head_dense", "head_dropout", "logits")


def backbone_layers(model: Any) -> list[Any]:
    """Layers that belong to the Xception backbone (everything but the input and the head)."""
    return [layer for layer in model.layers if layer.name not in HEAD_LAYERS]


def set_trainable_blocks(model: Any, first_block: int | None) -> None:
    """Train the backbone from Xception block `first_block` (1-14) on; None freezes it all.

    BatchNorm layers stay frozen whatever the block.
    """
    import keras

    for layer, block in zip(backbone_layers(model), _block_numbers(backbone_layers(model)), strict=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        else:
            layer.trainable = first_block is not None and block is not None and block >= first_block


def _block_numbers(layers: list[Any]) -> list[int | None]:
    """Block of each layer. Residual shortcuts have no block in their name (`conv2d_3`): they
    belong to the next named block, whose input they bypass."""
    named = [int(m.group(1)) if (m := re.match(r"block(\d+)_", layer.name)) else None for layer in layers]
    numbers: list[int | None] = []
    upcoming: int | None = None
    for value in reversed(named):
        upcoming = value if value is not None else upcoming
        numbers.append(upcoming)
    return numbers[::-1]
