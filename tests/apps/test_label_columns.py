"""Every label column takes its choices from the one label vocabulary (apps/scans/labels.py)."""

from apps.scans.labels import MODEL_LABELS, READING_LABELS
from apps.scans.models import ClassHeatmap, Prediction, ScanReview


def _choices(model: type, field: str) -> list[tuple[str, str]]:
    return list(model._meta.get_field(field).choices)


def test_model_output_columns_choose_from_the_models_labels():
    expected = [(label.value, label.label) for label in MODEL_LABELS]
    assert _choices(Prediction, "label") == expected
    assert _choices(ClassHeatmap, "label") == expected


def test_the_reading_column_chooses_from_the_reading_labels():
    assert _choices(ScanReview, "label") == [(label.value, label.label) for label in READING_LABELS]
