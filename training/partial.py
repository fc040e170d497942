"""Fine-tuned layers only: what a GPU run sends back, and how it becomes a model folder again.

A fine-tune from the shipped model that trains blocks `first_block`-14 and the head changes
only those layers (BatchNorm stays frozen), so the run returns just their weights (float16,
about 40 % of the model, in files under the machine's 16 MiB limit) and `apply_trained_layers`
lays them over the starting model's verified weights. Layers are keyed by their position in
the model (Keras numbers unnamed layers such as Xception's shortcut convolutions per process,
so names are not stable between builds) and checked by shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FILE_BYTES = 14 * 2**20


def save_trained_layers(model: Any, prefix: Path) -> list[Path]:
    """Write every layer with trainable weights as float16 `<position>/<i>` arrays, in files
    `<prefix>-NN.npz` of at most FILE_BYTES each; return the files."""
    arrays = {
        f"{position:04d}/{i}": np.asarray(weight, dtype=np.float32).astype(np.float16)
        for position, layer in enumerate(model.layers)
        if layer.trainable_weights
        for i, weight in enumerate(layer.get_weights())
    }
    groups: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for key, array in arrays.items():
        if groups[-1] and size + array.nbytes > FILE_BYTES:
            groups.append({})
            size = 0
        groups[-1][key] = array
        size += array.nbytes
    paths = []
    for number, group in enumerate(groups):
        path = Path(f"{prefix}-{number:02d}.npz")
        np.savez(path, **group)
        paths.append(path)
    return paths


def apply_trained_layers(model: Any, paths: Sequence[Path]) -> int:
    """Overwrite the layers stored by `save_trained_layers`; return how many were replaced."""
    by_layer: dict[int, dict[int, np.ndarray]] = {}
    for path in paths:
        with np.load(path) as stored:
            for key in stored.files:
                position, index = (int(part) for part in key.split("/"))
                by_layer.setdefault(position, {})[index] = stored[key].astype(np.float32)
    for position, arrays in by_layer.items():
        layer = model.layers[position]
        current = layer.get_weights()
        new = [arrays[i] for i in range(len(arrays))]
        if [w.shape for w in current] != [w.shape for w in new]:
            raise ValueError(f"layer {position} ({layer.name}) does not match the stored weights' shapes")
        layer.set_weights(new)
    return len(by_layer)
