"""Writes for scans, one module per concern:

- upload.py: `scans_upload`, THE intake entry point (pages, API, PACS, commands);
- publishing.py: analysis, study and class-heatmap messages, published after the commit;
- transitions.py: the worker's claim / complete / reject / fail / retry;
- reviews.py: a radiologist's reading (`scan_review`);
- sweep.py: `scans_requeue_stale`, what a lost message or a dead worker left behind;
- heatmaps.py: class heatmaps on demand;
- attempts.py (the attempt-fenced update) and files.py (files removed when a write fails).

State machine (stored on Scan): queued → processing → done | failed | rejected (not a brain
MRI slice, by the model's out-of-distribution gate: no prediction is stored). The Celery task in
workers/tasks.py only orchestrates; every transition is one of these functions. Callers import
from this package (`from apps.scans.services import scans_upload`); a test that patches a
function another one calls patches it in the module that holds it.
"""

from .heatmaps import (
    CLASS_HEATMAP_RETRY_AFTER,
    ClassHeatmapState,
    class_heatmap_complete,
    class_heatmap_fail,
    class_heatmap_store,
    scan_class_heatmap,
)
from .publishing import scan_enqueue, scans_enqueue, scans_enqueue_study
from .reviews import scan_review
from .sweep import SweepReport, _process_gone, scans_requeue_stale
from .transitions import (
    ModelOutputError,
    _check_result,
    gate_decimals,
    prediction_validated,
    rejection_message,
    scan_claim,
    scan_complete,
    scan_fail,
    scan_reject,
    scan_retry_or_fail,
    worker_identity,
)
from .upload import UploadOutcome, dicom_sequence, scans_upload

__all__ = [
    "CLASS_HEATMAP_RETRY_AFTER",
    "ClassHeatmapState",
    "ModelOutputError",
    "SweepReport",
    "UploadOutcome",
    "_check_result",
    "_process_gone",
    "class_heatmap_complete",
    "class_heatmap_fail",
    "class_heatmap_store",
    "dicom_sequence",
    "gate_decimals",
    "prediction_validated",
    "rejection_message",
    "scan_claim",
    "scan_class_heatmap",
    "scan_complete",
    "scan_enqueue",
    "scan_fail",
    "scan_reject",
    "scan_retry_or_fail",
    "scan_review",
    "scans_enqueue",
    "scans_enqueue_study",
    "scans_requeue_stale",
    "scans_upload",
    "worker_identity",
]
