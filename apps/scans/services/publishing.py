"""Publishing work to the workers: analysis messages (one scan, or a study's batches), the
study unpack job and class heatmaps, always after the commit that stored their rows.

A broker that is down never fails the request: the rows stay queued and the sweep
(services/sweep.py) publishes them again later. Tasks are sent by their pinned names
(workers/task_names.py): the web never imports workers/tasks.py, which imports these services.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from workers import task_names

from ..models import Scan, ScanStatus, StudyStatus, StudyUpload

logger = logging.getLogger(__name__)


def _send(task_name: str, argument: int | list[int]) -> None:
    """One message for the named task, routed by CELERY_TASK_ROUTES like any other; raises when
    the broker is unreachable (no retries: the caller leaves the row for the sweep)."""
    current_app.send_task(task_name, args=[argument], retry=False)


def analysis_groups(scans: Sequence[Scan], *, study: bool) -> tuple[list[int], list[list[int]]]:
    """(scans published one by one, studies published together): slices of one DICOM series
    form a study; with `study=True` so do the request's other files."""
    groups: dict[str, list[int]] = {}
    singles: list[int] = []
    for scan in scans:
        key = f"series:{scan.series_uid}" if scan.series_uid else ("request" if study else "")
        if key:
            groups.setdefault(key, []).append(scan.pk)
        else:
            singles.append(scan.pk)
    studies = [ids for ids in groups.values() if len(ids) > 1]
    singles += [ids[0] for ids in groups.values() if len(ids) == 1]
    return singles, studies


def enqueue_groups(singles: list[int], studies: list[list[int]]) -> None:
    scans_enqueue(scan_ids=singles)
    for ids in studies:
        scans_enqueue_study(scan_ids=ids)


def publish_on_commit(singles: list[int], studies: list[list[int]], *, study_ids: Sequence[int] = ()) -> None:
    """Publish the scans (`analysis_groups`' answer) and the DICOM study jobs once the current
    transaction commits: a worker must never look for a row that is not there yet."""

    def publish() -> None:
        enqueue_groups(singles, studies)
        for study_id in study_ids:
            study_enqueue(study_id=study_id)

    transaction.on_commit(publish, robust=True)


def study_enqueue(*, study_id: int) -> bool:
    """Publish the unpacking job. False when the broker is unreachable: the sweep sends it again."""
    try:
        _send(task_names.INGEST_STUDY, study_id)
    except Exception:  # kombu/redis raise several types for "no broker"
        logger.warning("study upload %s: broker unavailable, left for the sweep", study_id, exc_info=True)
        return False
    StudyUpload.objects.filter(pk=study_id, status=StudyStatus.RECEIVED).update(enqueued_at=timezone.now())
    return True


def scan_enqueue(*, scan_id: int) -> bool:
    """Publish the analysis task. False when the broker is unreachable: the scan stays queued
    (the page says it is waiting) and the sweep publishes it again later."""
    try:
        _send(task_names.ANALYZE_SCAN, scan_id)
    except Exception:  # kombu/redis raise several types for "no broker"
        logger.warning(
            "scan %s: broker unavailable, left queued for the sweep", scan_id, exc_info=True, extra={"scan_id": scan_id}
        )
        return False
    Scan.objects.filter(pk=scan_id, status=ScanStatus.QUEUED).update(enqueued_at=timezone.now())
    logger.info("scan %s: published for analysis", scan_id, extra={"scan_id": scan_id})
    return True


def scans_enqueue_study(*, scan_ids: Sequence[int]) -> int:
    """Publish the slices of one study as batches of up to SCAN_BATCH_SIZE (`analyze_scans`:
    one forward/backward pass per batch). Returns how many scans were published; with the
    broker down they stay queued and the sweep publishes them one by one."""
    published = 0
    size = max(1, settings.SCAN_BATCH_SIZE)
    for start in range(0, len(scan_ids), size):
        chunk = list(scan_ids[start : start + size])
        try:
            _send(task_names.ANALYZE_SCANS, chunk)
        except Exception:  # kombu/redis raise several types for "no broker"
            logger.warning("scans %s: broker unavailable, left queued for the sweep", chunk, exc_info=True)
            break
        Scan.objects.filter(pk__in=chunk, status=ScanStatus.QUEUED).update(enqueued_at=timezone.now())
        for scan_id in chunk:
            logger.info("scan %s: published in a study batch of %d", scan_id, len(chunk), extra={"scan_id": scan_id})
        published += len(chunk)
    return published


def scans_enqueue(*, scan_ids: Iterable[int]) -> int:
    """Publish several; returns how many were published. Stops at the first failure: with the
    broker down, each try costs the connection timeout, and the sweep publishes the rest."""
    published = 0
    for scan_id in scan_ids:
        if not scan_enqueue(scan_id=scan_id):
            break
        published += 1
    return published


def class_heatmap_publish(*, heatmap_id: int) -> None:
    """Publish the task that computes one class heatmap, after the commit."""
    def publish() -> None:
        try:
            _send(task_names.EXPLAIN_SCAN, heatmap_id)
        except Exception:  # no broker: the next request after CLASS_HEATMAP_RETRY_AFTER tries again
            logger.warning("class heatmap %s: broker unavailable", heatmap_id, exc_info=True)

    transaction.on_commit(publish, robust=True)
