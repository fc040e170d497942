"""The one label vocabulary: what the model outputs, what a radiologist reads, and how both are
named on every page, form, filter, API response and report.

Stored values are the model's own label strings (`mri.vocabulary.CLASS_NAMES`, the logit
order), so predictions written before this module existed keep their meaning. A reading may
also be "other / non-diagnostic", which the model never outputs.
"""

from __future__ import annotations

from django.db import models

from mri.vocabulary import CLASS_NAMES, TUMOUR_CLASSES


class Label(models.TextChoices):
    GLIOMA = "glioma", "Glioma"
    MENINGIOMA = "meningioma", "Meningioma"
    NOTUMOR = "notumor", "No tumour"
    PITUITARY = "pituitary", "Pituitary tumour"
    OTHER = "other", "Other / non-diagnostic"  # readings only

    @classmethod
    def name_of(cls, value: str) -> str:
        """A stored value as a radiologist reads it ("notumor" → "No tumour"); unknown values as they are."""
        try:
            return str(cls(value).label)
        except ValueError:
            return str(value)


# What the model can output, in its logit order; an unknown class name fails at import.
MODEL_LABELS: tuple[Label, ...] = tuple(Label(name) for name in CLASS_NAMES)
# What a radiologist can read a scan as: the model's classes, then "other".
READING_LABELS: tuple[Label, ...] = (*MODEL_LABELS, Label.OTHER)
TUMOUR_LABELS: frozenset[str] = frozenset(Label(name) for name in TUMOUR_CLASSES)

MODEL_LABEL_CHOICES = [(label.value, label.label) for label in MODEL_LABELS]
READING_CHOICES = [(label.value, label.label) for label in READING_LABELS]


def probability_text(value: float | None) -> str:
    """A probability in percent for reading (pages, reports): never "100.0" or "0.0", which
    would claim a certainty that a calibrated model does not have."""
    if value is None:
        return ""
    share = float(value) * 100
    if share >= 99.95:
        return ">99.9"
    if share < 0.05:
        return "<0.1"
    return f"{share:.1f}"
