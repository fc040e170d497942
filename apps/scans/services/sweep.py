"""The sweep: what a lost message or a dead worker left behind, published again (beat runs it)."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..models import Scan, ScanStatus
from .attempts import gave_up_message
from .publishing import scans_enqueue

logger = logging.getLogger(__name__)


def _process_gone(identity: str) -> bool:
    """Whether the worker process named "host:pid" was on this host and no longer runs."""
    host, _, pid = identity.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: is it there? (sends nothing)
    except ProcessLookupError:
        return True
    except PermissionError:  # there, another user's
        return False
    return _is_zombie(int(pid))


def _is_zombie(pid: int) -> bool:
    """A killed process whose parent died too stays a zombie until an init reaps it (a
    container's PID 1 often never does): it answers signal 0 but runs nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # not Linux, or gone meanwhile
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"  # the state follows the "(comm)" field


@dataclass(frozen=True)
class SweepReport:
    requeued: int
    published: int
    failed: int


def scans_requeue_stale(*, older_than: timedelta | None = None, limit: int = 500) -> SweepReport:
    """Send again what a lost message or a dead worker left behind.

    - queued for longer than `older_than` and not published within it (lost message,
      broker down at upload): published again;
    - processing for longer than the task's hard time limit (the worker died): back to
      queued and published, or failed once SCAN_MAX_ATTEMPTS attempts have been spent;
    - with SCAN_SWEEP_CHECKS_LOCAL_WORKERS (`make run`'s filesystem queue, which never
      redelivers), the same at once for a scan whose worker process on this host is gone.
    A duplicate message is harmless: the task does nothing for a scan that is not queued.
    """
    now = timezone.now()
    if older_than is None:
        older_than = timedelta(minutes=settings.SCAN_REQUEUE_AFTER_MINUTES)
    cutoff = now - older_than
    dead_cutoff = now - timedelta(seconds=settings.SCAN_TASK_TIME_LIMIT + 60)
    dead = Q(started_at__lt=dead_cutoff)
    if settings.SCAN_SWEEP_CHECKS_LOCAL_WORKERS:
        claims = Scan.objects.filter(status=ScanStatus.PROCESSING, started_at__gte=dead_cutoff).exclude(claimed_by="")
        gone = [pk for pk, identity in claims.values_list("pk", "claimed_by")[:limit] if _process_gone(identity)]
        if gone:
            logger.warning("sweep: scans %s were left in processing by a worker process that is gone", gone)
            dead |= Q(pk__in=gone)
    failed = Scan.objects.filter(dead, status=ScanStatus.PROCESSING, attempts__gte=settings.SCAN_MAX_ATTEMPTS).update(
        status=ScanStatus.FAILED,
        finished_at=now,
        error=gave_up_message(),
    )
    revived = list(Scan.objects.filter(dead, status=ScanStatus.PROCESSING).values_list("pk", flat=True)[:limit])
    Scan.objects.filter(pk__in=revived, status=ScanStatus.PROCESSING).update(
        status=ScanStatus.QUEUED, started_at=None, enqueued_at=None
    )
    stale = list(
        Scan.objects.filter(status=ScanStatus.QUEUED, queued_at__lt=cutoff)
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=cutoff))
        .exclude(pk__in=revived)
        .order_by("queued_at")
        .values_list("pk", flat=True)[:limit]
    )
    ids = revived + stale
    published = scans_enqueue(scan_ids=ids)
    if ids or failed:
        logger.info("sweep: requeued=%d published=%d failed=%d", len(ids), published, failed)
    return SweepReport(requeued=len(ids), published=published, failed=failed)
