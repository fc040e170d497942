"""The one label vocabulary of the model: its classes in logit order, which of them are tumours,
and the confidence below which a result is flagged. Plain constants (no NumPy, no OpenCV, no
TensorFlow), so the web reads them without loading the model's libraries; apps/scans/labels.py
names them for people (Django choices)."""
from __future__ import annotations

# The model's output classes, in its logit order; stored predictions use these strings.
CLASS_NAMES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
# The one class that is not a tumour: every tumour set is derived from it, never from a literal.
NO_TUMOUR = CLASS_NAMES[2]
TUMOUR_CLASSES: tuple[str, ...] = tuple(name for name in CLASS_NAMES if name != NO_TUMOUR)

# Below this top probability a result is flagged for a careful read, not asserted.
LOW_CONFIDENCE = 0.70
