"""The shipped model classifies its card's fixed list of validation scans as the card says."""
from __future__ import annotations

import numpy as np
import pytest

from mri.card import head_crop_of
from mri.model.store import load_classifier
from training.data import DEFAULT_DATA, samples_from_keys
from training.scoring import scan_logits

pytestmark = pytest.mark.model


def test_accuracy_on_the_cards_check_list_matches_the_card() -> None:
    model, card = load_classifier()
    check = card["check_list"]
    samples = samples_from_keys(DEFAULT_DATA, check["keys"])
    logits = scan_logits(
        model, [s.path for s in samples], int(card["input_size"]), progress=False, head_crop=head_crop_of(card)
    )
    accuracy = float((logits.argmax(1) == np.array([s.label for s in samples])).mean())
    assert accuracy == pytest.approx(check["accuracy"], abs=0.01)
    assert accuracy >= 0.95
