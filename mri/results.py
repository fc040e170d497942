"""The analysis result contract: what a worker's analyzer returns and the services store.

Light on purpose (no TensorFlow, no Django): the web process, the services, the runtime and
the tests import this one definition (docs/CONTRACTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mri.vocabulary import LOW_CONFIDENCE, NO_TUMOUR

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class AnalysisResult:
    label: str
    probabilities: dict[str, float]
    # float32 in [0, 1], the scan's height × width; for a scan longer than WORK_SIDE (2048 px),
    # the size of the box-averaged copy that was analysed (same aspect ratio).
    heatmap: np.ndarray
    overlay_png: bytes
    model_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Higher = less like the brain MRI slices the model was trained on (mri/model/ood.py); NaN
    # when the model card has no fitted gate. Out of distribution: above the card's threshold.
    ood_score: float = float("nan")
    out_of_distribution: bool = False
    # Which gate judged the score: the threshold it was held against and the sha256 of the gate's
    # statistics (the card's `ood`), kept with the score, since a gate can be refitted under one
    # model version. NaN and "" without a gate.
    ood_threshold: float = float("nan")
    ood_gate: str = ""
    # Why, when the evidence is not the score (mri/intake/colour_evidence.py: a colour image); "".
    ood_reason: str = ""
    # An unreassuring "No tumour" (low confidence, or `unvalidated` asked for a sequence the model
    # is not validated for): the likeliest tumour class and its heatmap (same shape rules as
    # `heatmap`), from the same pass: the map the scan card opens on. "" and None otherwise.
    tumour_label: str = ""
    tumour_heatmap: np.ndarray | None = None

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    @property
    def low_confidence(self) -> bool:
        return self.confidence < LOW_CONFIDENCE


def opening_label(label: str, probabilities: Mapping[str, float], not_validated: bool) -> str:
    """The class whose heatmap a result's card opens on: the predicted one, except a "No tumour"
    that is no reassurance (low confidence, or a sequence the model is not validated for). Then
    the most likely tumour class: a "No tumour" map shows nothing a reader can check, the tumour
    class's map shows where a missed tumour would be (the maps measured on outside gliomas,
    docs/model.md, are the true class's). Prediction.heatmap_label; the analyzer's traced pass
    makes the same choice in-graph (mri/model/analyzer.py)."""
    if label != NO_TUMOUR or not (float(probabilities.get(label, 0.0)) < LOW_CONFIDENCE or not_validated):
        return label
    tumours = [(float(p), name) for name, p in probabilities.items() if name != NO_TUMOUR]
    return max(tumours)[1] if tumours else label
