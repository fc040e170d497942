"""Removing a wrongly uploaded scan (another patient's slice, a duplicate, a photo of a form):
soft, audited, refused once the case is signed (a signed case changes only by addendum) and
while the scan is queued or being analysed (a worker owns it then)."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User

from .models import Scan, ScanStatus


def scan_remove(*, scan: Scan, by: User, reason: str) -> Scan:
    """Hide `scan` (which came from a clinic-scoped selector) everywhere, keeping who removed it,
    when and why; the audit trail records it. Nothing is deleted until the case is purged."""
    from apps.audit.models import AuditAction
    from apps.audit.services import audit_record

    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why the scan is removed (kept with the case)."})
    with transaction.atomic():
        locked = Scan.objects.select_for_update().select_related("case").filter(pk=scan.pk).first()
        if locked is None:
            raise ValidationError("This scan was already removed.")
        if locked.case.is_signed:
            raise ValidationError("The case is signed: a scan cannot be removed; add an addendum instead.")
        if locked.status in ScanStatus.IN_FLIGHT:  # removing it would strand its analysis
            raise ValidationError(
                "This scan is still being analysed: it can be removed once its analysis has finished."
            )
        locked.removed_at, locked.removed_by, locked.removed_reason = timezone.now(), by, reason[:500]
        locked.save(update_fields=["removed_at", "removed_by", "removed_reason"])
        audit_record(actor=by, action=AuditAction.DELETE, obj=locked, detail=f"scan removed: {reason[:200]}")
    return locked
