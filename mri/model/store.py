"""The shipped model on disk: float16 weight shards, sha256-checked against the model card
(mri/card.py).

Weights are stored as float16 (half the size, well under the repo's 50 MB budget; the card
records the validation accuracy measured *after* this rounding) in shards of at most 15 MB, so
each one also fits the transfer limits of the machines we train on. Loading verifies every
shard's sha256 against the card and refuses a model that does not match.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from mri.card import DEFAULT_MODEL_DIR, ModelCard, ModelIntegrityError, read_card

SHARD_BYTES = 15 * 2**20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights_fp16(model: Any, out_dir: Path) -> dict[str, str]:
    """Write the model's weights as float16 shards `weights-NN.npz`; return {file: sha256}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("weights-*.npz"):
        old.unlink()
    arrays = [np.asarray(w, dtype=np.float32).astype(np.float16) for w in model.get_weights()]
    shards: list[list[int]] = [[]]
    size = 0
    for index, array in enumerate(arrays):
        if shards[-1] and size + array.nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(index)
        size += array.nbytes
    hashes = {}
    for number, indices in enumerate(shards):
        path = out_dir / f"weights-{number:02d}.npz"
        np.savez(path, **{f"w{i:04d}": arrays[i] for i in indices})
        hashes[path.name] = sha256_file(path)
    return hashes


def verified_weights(model_dir: Path, card: dict) -> list[np.ndarray]:
    """Weights in model order, after checking each shard against the card's sha256."""
    model_dir = Path(model_dir)
    expected = ModelCard.of(card).weights_sha256
    if not expected:
        raise ModelIntegrityError(f"The model card in {model_dir} lists no weight files.")
    arrays: dict[int, np.ndarray] = {}
    for name, digest in sorted(expected.items()):
        path = model_dir / name
        if not path.exists():
            raise ModelIntegrityError(f"Model file {path} is missing.")
        actual = sha256_file(path)
        if actual != digest:
            raise ModelIntegrityError(
                f"Model file {path} has sha256 {actual}, but the model card expects {digest}: "
                "the file is corrupt or belongs to another model. Restore it from the repository."
            )
        with np.load(path) as shard:
            arrays.update({int(key[1:]): shard[key].astype(np.float32) for key in shard.files})
    return [arrays[i] for i in range(len(arrays))]


def load_classifier(model_dir: Path = DEFAULT_MODEL_DIR) -> tuple[Any, ModelCard]:
    """Build the architecture the card names and load the verified weights into it."""
    from mri.model.definition import build_classifier

    card = read_card(model_dir)
    weights = verified_weights(model_dir, card)
    model = build_classifier(card.input_size, head_units=card.head_units)
    if len(weights) != len(model.weights):
        raise ModelIntegrityError(
            f"The model files hold {len(weights)} tensors; the architecture needs {len(model.weights)}."
        )
    for stored, variable in zip(weights, model.weights, strict=True):
        if tuple(stored.shape) != tuple(variable.shape):
            raise ModelIntegrityError(
                f"The model files hold a {tuple(stored.shape)} tensor where the architecture the card names "
                f"needs {tuple(variable.shape)} ({variable.path}): the card's head_units or input size does not "
                "match the weights."
            )
    model.set_weights(weights)
    return model, card
