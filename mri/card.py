"""The model card: the JSON file beside the weights that says what a model is and how to serve it.

Read and written here only (`read_card`, `write_card`); `ModelCard` is the card as a typed object.
It is still the card's own dict (training adds sections by key, promote copies keys, JSON dumps
it as it is), with typed properties for what serving, the web and training read, each with the
default a card from before that field existed gets.

No NumPy, no OpenCV, no TensorFlow: the web reads the card (the validated sequences) too.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mri.vocabulary import CLASS_NAMES

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "brain-xception"
CARD_NAME = "model_card.json"
# The heatmap method of a card that names none (cards from before it was recorded): Grad-CAM on
# block14 (mri.model.cams.SHIPPED_METHOD is this one value).
DEFAULT_HEATMAP_METHOD = "gradcam"
# The head crop of a card that names none (mri.model.preprocessing.HEAD_CROPS).
DEFAULT_HEAD_CROP = "v1"


class ModelIntegrityError(RuntimeError):
    """The model files are missing or are not the ones the card describes."""


class ModelCard(dict):
    """A model card: the JSON object as a dict, plus typed reads of its fields."""

    @classmethod
    def of(cls, card: dict[str, Any]) -> ModelCard:
        """`card` as a ModelCard (itself when it already is one)."""
        return card if isinstance(card, ModelCard) else cls(card)

    @property
    def version(self) -> str:
        return str(self["version"])

    @property
    def classes(self) -> tuple[str, ...]:
        """The model's classes in logit order (cards before `class_names`: the vocabulary's)."""
        return tuple(self.get("class_names") or CLASS_NAMES)

    @property
    def input_size(self) -> int:
        return int(self["input_size"])

    @property
    def head_units(self) -> int:
        """Width of the head's hidden layer (cards before it was recorded: 256)."""
        return int(self.get("head_units", 256))

    @property
    def temperature(self) -> float:
        """The calibration temperature (1.0 before calibration)."""
        return float(self.get("temperature", 1.0))

    @property
    def head_crop(self) -> str:
        """The serving head crop a model was trained with (cards before it was recorded: "v1")."""
        return str((self.get("preprocessing") or {}).get("head_crop", DEFAULT_HEAD_CROP))

    @property
    def heatmap_method(self) -> str:
        """The heatmap method the card ships with (mri.model.cams.CAM_METHODS); before: Grad-CAM."""
        return str(self.get("heatmap_method") or DEFAULT_HEATMAP_METHOD)

    @property
    def weights_sha256(self) -> dict[str, str]:
        """{weight shard file: sha256}; empty when the card lists none."""
        return dict(self.get("weights_sha256") or {})

    @property
    def validated_sequences(self) -> tuple[str, ...] | None:
        """The sequences the card lists as validated (`sequences.validated`); None: no list."""
        listed = (self.get("sequences") or {}).get("validated")
        return tuple(listed) if listed is not None else None

    @property
    def sequences(self) -> dict[str, Any]:
        """The `sequences` section (per-sequence figures, external validation groups); {}: none."""
        return dict(self.get("sequences") or {})

    @property
    def ood(self) -> dict[str, Any] | None:
        """The fitted out-of-distribution gate (`ood` section); None before the fit."""
        section = self.get("ood")
        return dict(section) if section else None

    @property
    def validation(self) -> dict[str, Any]:
        """The validation figures (`validation` section); {} before calibration."""
        return dict(self.get("validation") or {})

    @property
    def sources(self) -> dict[str, Any]:
        """Where the training data came from (`data` section: source, split, counts)."""
        return dict(self.get("data") or {})

    def to_json(self) -> str:
        return json.dumps(self, indent=2) + "\n"


def read_card(model_dir: Path | str = DEFAULT_MODEL_DIR) -> ModelCard:
    path = Path(model_dir) / CARD_NAME
    if not path.exists():
        raise ModelIntegrityError(f"No model card at {path}: the model directory is incomplete.")
    return ModelCard(json.loads(path.read_text()))


def write_card(model_dir: Path | str, card: dict[str, Any]) -> None:
    (Path(model_dir) / CARD_NAME).write_text(ModelCard.of(card).to_json())


def head_crop_of(card: dict[str, Any]) -> str:
    """`ModelCard.head_crop` of a card given as a plain dict."""
    return ModelCard.of(card).head_crop


def heatmap_method_of(card: dict[str, Any]) -> str:
    """`ModelCard.heatmap_method` of a card given as a plain dict."""
    return ModelCard.of(card).heatmap_method
