"""Scans held for a person's decision: the worker found text burnt into the pixels (often a
patient's name, mri/intake/burnt_text.py), so the scan is not analysed or passed on until a clinic
admin or radiologist of its clinic releases it to analysis or discards it. Both are audited.

processing → held (`scan_hold`, by the worker); held → queued (`scan_hold_release`: analysed
without the text check) or held → failed (`scan_hold_discard`: never analysed, `error` says so).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.clinics import same_clinic
from apps.accounts.models import User

from .models import Scan, ScanStatus
from .services.attempts import owned_by_attempt

logger = logging.getLogger(__name__)

HOLD_REASON = "Text burnt into the image: a clinic admin or radiologist must release it to analysis or discard it."
DISCARDED = "Discarded by {user}: text burnt into the image."


def hold_decision_allowed(user: User, scan: Scan) -> bool:
    """A clinic admin or radiologist of the scan's clinic decides; clinic staff do not."""
    return same_clinic(user, scan) and (user.is_radiologist or user.is_clinic_admin)


def scan_hold(*, scan: Scan) -> bool:
    """processing → held, by the worker that found text in the pixels. False if this attempt
    no longer owns the scan. The text itself is neither stored nor logged (patient data)."""
    updated = owned_by_attempt(scan, status=ScanStatus.HELD, error=HOLD_REASON, finished_at=timezone.now())
    if updated:
        logger.info("scan %s: held, text burnt into the image", scan.pk, extra={"scan_id": scan.pk})
    return bool(updated)


def _check(scan: Scan, by: User, detail: str) -> None:
    """Outside the decision's transaction, so that the refusal's audit event stays."""
    from apps.audit.models import AuditAction, AuditOutcome
    from apps.audit.services import audit_record

    if not hold_decision_allowed(by, scan):
        audit_record(actor=by, action=AuditAction.REVIEW, obj=scan, outcome=AuditOutcome.FAILURE, detail=detail)
        raise PermissionDenied("Only a clinic admin or a radiologist may release or discard a held scan.")


def _decide(scan: Scan, by: User, detail: str) -> Scan:
    from apps.audit.models import AuditAction
    from apps.audit.services import audit_record

    locked = Scan.objects.select_for_update().filter(pk=scan.pk).first()
    if locked is None:  # removed meanwhile (the live manager hides it)
        raise ValidationError("This scan was removed from the case: nothing to decide.")
    if locked.status != ScanStatus.HELD:
        raise ValidationError("This scan is not held: nothing to decide.")
    audit_record(actor=by, action=AuditAction.REVIEW, obj=scan, detail=detail)
    return locked


@contextmanager
def _deciding(scan: Scan, by: User, detail: str) -> Iterator[Scan]:
    """The decision's frame: the role check (its refusal audited, outside the transaction), then
    the locked, still-held scan inside one; the caller changes it in the `with` block."""
    _check(scan, by, detail)
    with transaction.atomic():
        yield _decide(scan, by, detail)


def scan_hold_release(*, scan: Scan, by: User) -> Scan:
    """held → queued, analysed without the text check (a person saw the text and accepts it)."""
    from .services import scan_enqueue

    with _deciding(scan, by, "held scan released to analysis (text burnt into the image)") as locked:
        locked.status, locked.error, locked.burnt_text_released = ScanStatus.QUEUED, "", True
        locked.queued_at, locked.enqueued_at, locked.started_at, locked.finished_at = timezone.now(), None, None, None
        fields = ["status", "error", "burnt_text_released", "queued_at", "enqueued_at", "started_at", "finished_at"]
        locked.save(update_fields=fields)
        transaction.on_commit(lambda: scan_enqueue(scan_id=locked.pk))
    return locked


def scan_hold_discard(*, scan: Scan, by: User) -> Scan:
    """held → failed: never analysed; the file stays with the case until the case is deleted."""
    with _deciding(scan, by, "held scan discarded (text burnt into the image)") as locked:
        locked.status, locked.finished_at = ScanStatus.FAILED, timezone.now()
        locked.error = DISCARDED.format(user=by.get_username())
        locked.save(update_fields=["status", "error", "finished_at"])
    return locked
