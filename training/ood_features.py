"""Features the out-of-distribution gate works on, computed exactly as the serving path does.

For each image: the logits, the pooled maps of every gate input (mri.model.ood.GATE_INPUTS:
the entry flow's output, mean and standard deviation, which gates fit now; `block14_sepconv1_act`'s
mean, which earlier gates read), and two candidates measured but not served (the global average
of `block14_sepconv2_act` and the head's Dense activations).
Features of the 5,712 scans take minutes on a CPU, so they are cached under var/ood/, per model
version and per image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mri.intake.limits import ScanDecodeError
from mri.model.ood import GATE_INPUTS, GateInput
from mri.model.preprocessing import model_batch, preprocess_scan

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / "var" / "ood"
# name → layer whose output is kept, pooled over space when 4-D (a 2-D output is kept as is)
FEATURE_LAYERS: dict[str, GateInput] = {
    "pool": GateInput("block14_sepconv2_act", "mean"),
    **GATE_INPUTS,
    "dense": GateInput("head_dense", "mean"),
    "logits": GateInput("logits", "mean"),
}


def feature_model(model: Any, specs: Mapping[str, GateInput] = FEATURE_LAYERS) -> Any:
    """A Keras model returning the `specs` layers' outputs in their order, pooled as each says."""
    import keras

    outputs = []
    for spec in specs.values():
        tensor = model.get_layer(spec.layer_name(model)).output
        if len(tensor.shape) == 4:
            pooled = [keras.ops.mean(tensor, axis=(1, 2))]
            if spec.pooling == "mean+std":
                pooled.append(keras.ops.std(tensor, axis=(1, 2)))
            tensor = keras.ops.concatenate(pooled, axis=1) if len(pooled) > 1 else pooled[0]
        outputs.append(tensor)
    return keras.Model(model.inputs, outputs)


def extract(
    features: Any,
    blobs: Sequence[Callable[[], bytes]],
    input_size: int,
    batch_size: int = 16,
    desc: str = "features",
    head_crop: str = "v1",
    names: Sequence[str] = tuple(FEATURE_LAYERS),
) -> dict[str, np.ndarray]:
    """Feature arrays for images given as byte loaders; an image the decoder refuses gets NaN
    rows (and `decoded` False): the upload check stops it before the model ever sees it.
    `head_crop`: the model card's (mri.card.head_crop_of), as the runtime uses. `names`: the
    features model's outputs in order (those of feature_model's `specs`)."""
    from tqdm import tqdm

    columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
    decoded: list[bool] = []
    bar = tqdm(total=len(blobs), desc=desc, unit="img", mininterval=10)
    for start in range(0, len(blobs), batch_size):
        prepared, ok = [], []
        for load in blobs[start : start + batch_size]:
            try:
                prepared.append(preprocess_scan(load(), input_size, head_crop))
                ok.append(True)
            except ScanDecodeError:
                ok.append(False)
        outputs = features.predict_on_batch(model_batch(prepared)) if prepared else None
        for index, name in enumerate(names):
            width = int(features.outputs[index].shape[-1])
            rows = np.full((len(ok), width), np.nan, dtype=np.float32)
            if outputs is not None:
                rows[np.flatnonzero(ok)] = np.asarray(outputs[index], dtype=np.float32)
            columns[name].append(rows)
        decoded.extend(ok)
        bar.update(len(ok))
    bar.close()
    result = {name: np.concatenate(parts) for name, parts in columns.items()}
    result["decoded"] = np.asarray(decoded, dtype=bool)
    return result


def cached_file_features(
    features: Any, model_version: str, input_size: int, paths: Sequence[Path], store: str, head_crop: str = "v1"
) -> dict[str, np.ndarray]:
    """Features of image files, rows in `paths` order (see cached_features)."""
    items = [(str(p), (lambda p=p: Path(p).read_bytes())) for p in paths]
    return cached_features(features, model_version, input_size, items, store, head_crop=head_crop)


def cached_features(
    features: Any,
    model_version: str,
    input_size: int,
    items: Sequence[tuple[str, Callable[[], bytes]]],
    store: str,
    chunk: int = 200,
    head_crop: str = "v1",
) -> dict[str, np.ndarray]:
    """Features of (key, loader) images, rows in `items` order, from a per-model store
    var/ood/<store>-<model version>.npz keyed by `key`. Missing rows are computed and saved
    every `chunk` images, so an interrupted run keeps its work and any subset reuses it."""
    path = CACHE_DIR / f"{store}-{model_version}.npz"
    table = _read_store(path)
    missing = [item for item in items if item[0] not in table["index"]]
    for start in range(0, len(missing), chunk):
        part = missing[start : start + chunk]
        found = extract(
            features,
            [load for _, load in part],
            input_size,
            desc=f"{store} +{start}/{len(missing)}",
            head_crop=head_crop,
        )
        table = _append(table, [key for key, _ in part], found)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp.npz")
        np.savez(temporary, keys=np.asarray(table["keys"]), layout=np.asarray(_layout()), **table["columns"])
        temporary.replace(path)
    rows = np.asarray([table["index"][key] for key, _ in items], dtype=np.int64)
    return {name: column[rows] for name, column in table["columns"].items()}


def _layout() -> str:
    """What the stored columns are (names, layers, pooling): a store written under another
    layout is not reused."""
    return repr(sorted((name, spec.layer, spec.pooling, spec.input_of) for name, spec in FEATURE_LAYERS.items()))


def _read_store(path: Path) -> dict:
    empty: dict = {"keys": [], "index": {}, "columns": {}}
    if not path.exists():
        return empty
    with np.load(path) as stored:
        keys = [str(k) for k in stored["keys"]]
        columns = {name: stored[name] for name in stored.files if name != "keys"}
    if str(columns.pop("layout", "")) != _layout():
        return empty  # written when other features were kept: computed again, then replaced
    return {"keys": keys, "index": {k: i for i, k in enumerate(keys)}, "columns": columns}


def _append(table: dict, keys: list[str], found: dict[str, np.ndarray]) -> dict:
    columns = {
        name: np.concatenate([table["columns"][name], values]) if table["columns"] else values
        for name, values in found.items()
    }
    all_keys = table["keys"] + keys
    return {"keys": all_keys, "index": {k: i for i, k in enumerate(all_keys)}, "columns": columns}
