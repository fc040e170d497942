"""The one label vocabulary (mri/vocabulary.py) and what is derived from it."""
from __future__ import annotations

from apps.scans.labels import TUMOUR_LABELS
from mri.vocabulary import CLASS_NAMES, NO_TUMOUR, TUMOUR_CLASSES


def test_tumour_classes_derive_from_the_vocabulary():
    assert NO_TUMOUR in CLASS_NAMES
    assert set(TUMOUR_CLASSES) == set(CLASS_NAMES) - {NO_TUMOUR}
    assert set(TUMOUR_CLASSES) == TUMOUR_LABELS
