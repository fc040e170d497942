"""The shipped model: within its size budget, verified by sha256, refused when altered."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mri.card import DEFAULT_MODEL_DIR, ModelIntegrityError, read_card
from mri.model.store import sha256_file, verified_weights


def test_shipped_model_is_described_by_its_card() -> None:
    card = read_card()
    assert card["class_names"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert card["temperature"] > 0
    for key in ("version", "input_size", "command", "train_wall_minutes", "libraries", "validation", "data", "recipe"):
        assert key in card, key
    total = 0
    for name, digest in card["weights_sha256"].items():
        path = DEFAULT_MODEL_DIR / name
        assert sha256_file(path) == digest
        total += path.stat().st_size
    assert total <= 50 * 2**20


def copy_model(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    return target


def test_an_altered_weight_file_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    model_dir = copy_model(tmp_path)
    shard = sorted(model_dir.glob("weights-*.npz"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=rf"{shard.name} has sha256 .* but the model card expects"):
        verified_weights(model_dir, read_card(model_dir))


def test_a_missing_weight_file_is_refused(tmp_path: Path) -> None:
    model_dir = copy_model(tmp_path)
    shard = sorted(model_dir.glob("weights-*.npz"))[-1]
    shard.unlink()
    with pytest.raises(ModelIntegrityError, match="is missing"):
        verified_weights(model_dir, read_card(model_dir))


def test_a_missing_card_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError, match="No model card"):
        read_card(tmp_path)
