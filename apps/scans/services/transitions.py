"""The worker's state transitions: queued → processing → done | failed | rejected (not a brain
MRI slice, by the model's out-of-distribution gate: no prediction is stored), and back to
queued for a retry. Every write out of processing is fenced by the attempt (attempts.py)."""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from mri.intake.sequence import is_validated
from mri.results import AnalysisResult

from ..labels import MODEL_LABELS
from ..models import Prediction, Scan, ScanStatus
from . import files
from .attempts import gave_up_message, owned_by_attempt, still_owned

logger = logging.getLogger(__name__)


class ModelOutputError(ValueError):
    """The analyzer returned something outside its contract (a bug, not a transient error)."""


def worker_identity() -> str:
    """This process as "host:pid", stored on the scan it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


@functools.lru_cache(maxsize=8)
def _validated_sequences(model_version: str) -> tuple[str, ...] | None:
    """The sequences the serving model's card lists as validated; None when the card is not the
    one that produced `model_version` (then no claim is made either way)."""
    from mri.card import DEFAULT_MODEL_DIR, read_card

    try:
        card = read_card(os.environ.get("MODEL_DIR") or DEFAULT_MODEL_DIR)
    except Exception:
        return None
    return card.validated_sequences if card.version == model_version else None


def prediction_validated(*, scan: Scan, model_version: str) -> bool | None:
    return is_validated(scan.sequence, _validated_sequences(model_version))


def scan_claim(*, scan_id: int, redelivered: bool = False) -> Scan | None:
    """queued → processing, for the worker about to analyse it.

    None when there is nothing to do: the row is gone, already done or failed, or another
    worker holds it. The conditional UPDATE makes the claim safe even where the database
    ignores select_for_update (SQLite).

    `redelivered`: the broker delivered this message again because the worker that held it
    died (acks_late + reject_on_worker_lost). A scan still in processing was that worker's,
    so this attempt takes it over at once (a new attempt) instead of waiting for the sweep;
    once SCAN_MAX_ATTEMPTS are spent the scan is failed instead. Done and failed scans are
    left alone as always.
    """
    with transaction.atomic():
        scan = Scan.objects.select_for_update().filter(pk=scan_id).first()
        if scan is None:
            return None
        if scan.status == ScanStatus.PROCESSING and redelivered:
            # Same attempt count as read: another worker that took it over first wins.
            if scan.attempts >= settings.SCAN_MAX_ATTEMPTS:
                owned_by_attempt(scan, status=ScanStatus.FAILED, finished_at=timezone.now(), error=gave_up_message())
                logger.warning(
                    "scan %s: redelivered after %s attempts, failed", scan_id, scan.attempts, extra={"scan_id": scan_id}
                )
                return None
            claimed = owned_by_attempt(
                scan,
                started_at=timezone.now(),
                finished_at=None,
                error="",
                attempts=F("attempts") + 1,
                claimed_by=worker_identity(),
            )
            if claimed:
                logger.warning(
                    "scan %s: redelivered while processing (worker lost), taking it over", scan_id,
                    extra={"scan_id": scan_id},
                )  # fmt: skip
        elif scan.status != ScanStatus.QUEUED:
            return None
        else:
            claimed = Scan.objects.filter(pk=scan_id, status=ScanStatus.QUEUED).update(
                status=ScanStatus.PROCESSING,
                started_at=timezone.now(),
                finished_at=None,
                error="",
                attempts=F("attempts") + 1,
                claimed_by=worker_identity(),
            )
        if not claimed:
            return None
        scan.refresh_from_db()
        return scan


def _heatmap_png(heatmap: Any) -> bytes:
    # Imported here: only a worker stores a result, and OpenCV (which encodes it) stays out of
    # the web process (tests/test_layout.py).
    from mri.model.overlays import encode_heatmap_png

    try:
        return encode_heatmap_png(heatmap)
    except ValueError as exc:
        raise ModelOutputError(str(exc)) from exc


def _check_result(result: AnalysisResult) -> None:
    if result.label not in MODEL_LABELS:
        raise ModelOutputError(f"model returned unknown label {result.label!r}")
    if set(result.probabilities) != set(MODEL_LABELS):
        raise ModelOutputError(f"model returned probabilities for {sorted(result.probabilities)}")
    if not result.overlay_png.startswith(b"\x89PNG"):
        raise ModelOutputError("model returned an overlay that is not a PNG")


def scan_complete(*, scan: Scan, result: AnalysisResult) -> Prediction | None:
    """processing → done, storing the prediction, heatmap and overlay.

    None (and nothing stored) when this attempt no longer owns the scan: the sweep handed it
    to a newer attempt, another one finished first, or the scan was removed meanwhile (then the
    live manager no longer sees it; a batch's other slices must still be stored).
    """
    _check_result(result)
    heatmap_png = _heatmap_png(result.heatmap)
    with files.removed_on_failure() as written, transaction.atomic():
        current = Scan.objects.select_for_update().filter(pk=scan.pk).first()
        if not still_owned(current, scan):
            return None
        prediction = Prediction(
            scan=current,
            label=result.label,
            probabilities={k: float(v) for k, v in result.probabilities.items()},
            model_version=str(result.model_version),
            timings_ms={k: round(float(v), 2) for k, v in (result.timings_ms or {}).items()},
            validated=prediction_validated(scan=current, model_version=str(result.model_version)),
        )
        prediction.heatmap.save("heatmap.png", ContentFile(heatmap_png), save=False)
        written.append(prediction.heatmap.name)
        prediction.overlay.save("overlay.png", ContentFile(result.overlay_png), save=False)
        written.append(prediction.overlay.name)
        prediction.save()
        current.status, current.finished_at, current.error = ScanStatus.DONE, timezone.now(), ""
        for name, value in _gate_record(result).items():
            setattr(current, name, value)
        current.save(update_fields=["status", "finished_at", "error", *GATE_FIELDS])
    return prediction


GATE_FIELDS = ("ood_score", "ood_threshold", "ood_gate")


def _gate_record(result: AnalysisResult) -> dict[str, float | str | None]:
    """The score and the gate that judged it (threshold, statistics sha256), for the scan's row;
    None and "" where the model has no gate."""
    return {
        "ood_score": _finite(getattr(result, "ood_score", None)),
        "ood_threshold": _finite(getattr(result, "ood_threshold", None)),
        "ood_gate": str(getattr(result, "ood_gate", "") or ""),
    }


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def gate_decimals(score: float | None, threshold: float | None) -> int:
    """Decimals to show a gate's score and threshold with: three (at one, the shipped threshold
    2.265 would read as its neighbours' scores), more while the two would still read alike (a
    score of 2.2654 rejected above 2.2652 must not read "2.265, above 2.265"); one without a
    threshold."""
    if score is None or threshold is None:
        return 1
    digits = 3
    while digits < 15 and f"{score:.{digits}f}" == f"{threshold:.{digits}f}":
        digits += 1
    return digits


def rejection_message(result: AnalysisResult) -> str:
    if getattr(result, "ood_reason", ""):
        return result.ood_reason
    threshold = _finite(getattr(result, "ood_threshold", None))
    digits = gate_decimals(result.ood_score, threshold)
    above = f", above the gate's threshold of {threshold:.{digits}f}" if threshold is not None else ""
    return (
        "This does not look like a brain MRI slice (its out-of-distribution score is "
        f"{result.ood_score:.{digits}f}{above}, beyond what the brain MRI slices the model was trained on reach): "
        "no tumour label is given."
    )


def scan_reject(*, scan: Scan, result: AnalysisResult) -> bool:
    """processing → rejected: the out-of-distribution gate says this is not a brain MRI slice.
    No prediction, heatmap or overlay is stored; `error` says why. False if this attempt lost
    the scan."""
    updated = owned_by_attempt(
        scan,
        status=ScanStatus.REJECTED,
        error=rejection_message(result),
        finished_at=timezone.now(),
        **_gate_record(result),
    )
    return bool(updated)


def scan_fail(*, scan: Scan, error: str) -> bool:
    """processing → failed with a message for the user. False if this attempt lost the scan."""
    return bool(owned_by_attempt(scan, status=ScanStatus.FAILED, error=error[:2000], finished_at=timezone.now()))


def scan_retry_or_fail(*, scan: Scan, error: str) -> str:
    """After an error that may be transient (out of GPU memory, a worker misconfigured): back
    to queued for the sweep to publish again, or failed once SCAN_MAX_ATTEMPTS are spent.
    Returns the new status, or "" if this attempt no longer owns the scan."""
    if scan.attempts >= settings.SCAN_MAX_ATTEMPTS:
        return ScanStatus.FAILED if scan_fail(scan=scan, error=error) else ""
    updated = owned_by_attempt(
        scan,
        status=ScanStatus.QUEUED,
        started_at=None,
        enqueued_at=None,  # the next sweep publishes it again
        error=f"Attempt {scan.attempts} failed; it will be retried. ({error})"[:2000],
    )
    return ScanStatus.QUEUED if updated else ""
