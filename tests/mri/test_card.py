"""The model card, read and written in one place (mri/card.py), as a typed object."""
from __future__ import annotations

import json

from mri.card import DEFAULT_MODEL_DIR, ModelCard, head_crop_of, heatmap_method_of, read_card, write_card
from mri.model.cams import SHIPPED_METHOD
from mri.vocabulary import CLASS_NAMES


def test_shipped_card_reads_typed():
    card = read_card(DEFAULT_MODEL_DIR)
    raw = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    assert isinstance(card, ModelCard)
    assert card == raw  # still the card's own dict
    assert card.version == raw["version"]
    assert card.input_size == int(raw["input_size"])
    assert card.temperature == float(raw["temperature"])
    assert card.classes == tuple(raw["class_names"]) == CLASS_NAMES
    assert card.weights_sha256 == raw["weights_sha256"]
    assert card.validated_sequences == tuple(raw["sequences"]["validated"])
    assert card.ood == raw["ood"]


def test_defaults_of_an_early_card():
    card = ModelCard({"version": "v0", "input_size": "224"})
    assert (card.input_size, card.temperature, card.head_crop) == (224, 1.0, "v1")
    assert card.heatmap_method == SHIPPED_METHOD
    assert card.classes == CLASS_NAMES
    assert card.validated_sequences is None
    assert card.ood is None
    assert card.validation == {}
    assert card.sequences == {}
    assert card.weights_sha256 == {}


def test_plain_dict_helpers_agree():
    raw = {"preprocessing": {"head_crop": "lit"}, "heatmap_method": "layercam"}
    assert head_crop_of(raw) == ModelCard(raw).head_crop == "lit"
    assert heatmap_method_of(raw) == "layercam"


def test_write_then_read_round_trips(tmp_path):
    card = {"version": "x", "input_size": 96, "ood": {"threshold": 1.5}}
    write_card(tmp_path, card)
    assert read_card(tmp_path) == card
    assert (tmp_path / "model_card.json").read_text() == json.dumps(card, indent=2) + "\n"
