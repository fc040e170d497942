"""Celery tasks. They take ids and orchestrate; apps/scans/services.py owns the state machine.

The web process imports this module to publish tasks, so TensorFlow is imported only inside
the task body (via workers.runtime), i.e. only in worker processes.
"""

import logging
import time
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from apps.scans import services
from workers.celery_policy import inference_task, maintenance_task

logger = logging.getLogger(__name__)


def _get_analyzer() -> Any:
    from workers.runtime import get_analyzer  # lazy: loads TensorFlow; one model per process

    return get_analyzer()


@inference_task(bind=True)
def analyze_scan(self: Task, scan_id: int) -> str:
    """Analyse one scan. Idempotent: a scan that is done, failed, deleted or (for a first
    delivery) taken by another worker is left alone, so a duplicate message does nothing.

    A message the broker delivered again after its worker died (acks_late +
    reject_on_worker_lost) takes over a scan left in processing, as a new attempt, so the
    scan does not wait for the sweep (scan_claim; SCAN_MAX_ATTEMPTS still applies)."""
    started = time.perf_counter()
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    scan = services.scan_claim(scan_id=scan_id, redelivered=redelivered)
    if scan is None:
        logger.info("scan %s: not queued, nothing to do", scan_id)
        return "skipped"
    from workers.imaging import ScanDecodeError

    try:
        with scan.image.open("rb") as handle:
            data = handle.read()
        loaded = time.perf_counter()
        result = _get_analyzer().analyze(data)
        analysed = time.perf_counter()
        prediction = services.scan_complete(scan=scan, result=result)
    except ScanDecodeError as exc:
        services.scan_fail(scan=scan, error=exc.args[0] if exc.args else "The image cannot be read.")
        logger.info("scan %s: failed, unreadable image: %s", scan_id, exc)
        return "failed"
    except SoftTimeLimitExceeded:
        services.scan_fail(scan=scan, error="The analysis took too long and was stopped.")
        logger.warning("scan %s: failed, soft time limit", scan_id)
        return "failed"
    except services.ModelOutputError:
        services.scan_fail(scan=scan, error="The model returned an unusable result; the team has been notified.")
        logger.exception("scan %s: failed, model output outside the contract", scan_id)
        return "failed"
    except FileNotFoundError:
        services.scan_fail(scan=scan, error="The uploaded file is missing from storage.")
        logger.exception("scan %s: failed, file missing", scan_id)
        return "failed"
    except Exception as exc:
        # Possibly transient (GPU memory, a worker's setup): retried by the sweep, then failed.
        status = services.scan_retry_or_fail(
            scan=scan, error=f"The analysis failed ({type(exc).__name__}). Try uploading again."
        )
        logger.exception("scan %s: error on attempt %s, now %s", scan_id, scan.attempts, status or "superseded")
        return "retry" if status == "queued" else "failed"
    outcome = "done" if prediction is not None else "superseded"
    logger.info(
        "scan %s: %s label=%s read=%.0fms analyze=%.0fms store=%.0fms",
        scan_id,
        outcome,
        getattr(prediction, "label", "-"),
        (loaded - started) * 1000,
        (analysed - loaded) * 1000,
        (time.perf_counter() - analysed) * 1000,
    )
    return outcome


@maintenance_task
def requeue_stale_scans() -> dict[str, int]:
    """Beat runs this every minute (settings CELERY_BEAT_SCHEDULE) on the "maintenance" queue;
    also `manage.py requeue_stale_scans`."""
    report = services.scans_requeue_stale()
    return {"requeued": report.requeued, "published": report.published, "failed": report.failed}


@maintenance_task
def purge_deleted_cases() -> dict[str, int]:
    """Beat runs this every CASE_PURGE_INTERVAL_SECONDS on the "maintenance" queue: cases
    soft-deleted more than CASE_RETENTION_DAYS ago go for good, with their scans and files."""
    from apps.cases.services import cases_purge_deleted

    return {"purged": cases_purge_deleted()}
