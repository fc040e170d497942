"""The attempt fence: a worker's write lands only while its attempt still owns the scan.

Every claim bumps `Scan.attempts`; the sweep or a redelivery may hand the scan to a newer
attempt meanwhile, so each transition out of processing is a conditional UPDATE on the
attempt the worker read. This module is the one place that condition is written.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from ..models import Scan, ScanStatus


def owned_by_attempt(scan: Scan, **changes: Any) -> int:
    """Apply `changes` to `scan` only if it is still processing under the attempt `scan` was
    read with. Returns how many rows changed (0: this attempt lost the scan)."""
    return Scan.objects.filter(pk=scan.pk, status=ScanStatus.PROCESSING, attempts=scan.attempts).update(**changes)


def still_owned(current: Scan | None, scan: Scan) -> bool:
    """Whether the locked row `current` is still `scan`'s attempt (the same fence, for writes
    that need the row itself, not an UPDATE)."""
    return current is not None and current.status == ScanStatus.PROCESSING and current.attempts == scan.attempts


def gave_up_message() -> str:
    """The error a scan gets once SCAN_MAX_ATTEMPTS attempts are spent without a result."""
    return f"The analysis did not finish after {settings.SCAN_MAX_ATTEMPTS} attempts."
