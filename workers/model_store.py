"""The shipped model on disk: float16 weight shards, a JSON model card, sha256 checks.

Weights are stored as float16 (half the size, well under the repo's 50 MB budget; the card
records the validation accuracy measured *after* this rounding) in shards of at most 15 MB, so
each one also fits the transfer limits of the machines we train on. Loading verifies every
shard's sha256 against the card and refuses a model that does not match.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "brain-xception"
CARD_NAME = "model_card.json"
SHARD_BYTES = 15 * 2**20


class ModelIntegrityError(RuntimeError):
    """The model files are missing or are not the ones the card describes."""


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


def read_card(model_dir: Path = DEFAULT_MODEL_DIR) -> dict:
    path = Path(model_dir) / CARD_NAME
    if not path.exists():
        raise ModelIntegrityError(f"No model card at {path}: the model directory is incomplete.")
    return json.loads(path.read_text())


def head_crop_of(card: dict) -> str:
    """The serving head crop a model was trained with (cards before it was recorded: "v1")."""
    return str((card.get("preprocessing") or {}).get("head_crop", "v1"))


def heatmap_method_of(card: dict) -> str:
    """The heatmap method the card ships with (workers.cams.CAM_METHODS); before: Grad-CAM."""
    from workers.cams import SHIPPED_METHOD

    return str(card.get("heatmap_method") or SHIPPED_METHOD)


def write_card(model_dir: Path, card: dict) -> None:
    (Path(model_dir) / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")


def verified_weights(model_dir: Path, card: dict) -> list[np.ndarray]:
    """Weights in model order, after checking each shard against the card's sha256."""
    model_dir = Path(model_dir)
    expected = card.get("weights_sha256") or {}
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


def load_classifier(model_dir: Path = DEFAULT_MODEL_DIR) -> tuple[Any, dict]:
    """Build the architecture the card names and load the verified weights into it."""
    from workers.model_def import build_classifier

    card = read_card(model_dir)
    weights = verified_weights(model_dir, card)
    model = build_classifier(int(card["input_size"]))
    if len(weights) != len(model.weights):
        raise ModelIntegrityError(
            f"The model files hold {len(weights)} tensors; the architecture needs {len(model.weights)}."
        )
    model.set_weights(weights)
    return model, card
