"""Celery tasks. They take ids and orchestrate; apps/scans/services/ owns the state machine.

The web process imports this module to publish tasks, so TensorFlow is imported only inside
the task body (via workers.runtime), i.e. only in worker processes. Files are read and written
through Django's storage API only (local disk or the S3 bucket alike), never a local path, so a
worker shares no disk with the web hosts.

- `analyze_scan(scan_id)`: one scan, the path every upload and the sweep use;
- `analyze_scans(scan_ids)`: the slices of one study in one task, published by
  `scans_upload(..., study=True)`; on a GPU worker in one batch (`Analyzer.analyze_batch`: one
  forward/backward pass), on a CPU worker in chunks of STUDY_LANE_BATCH slices per call,
  STUDY_ANALYSIS_LANES chunks at a time on threads of the task (the results stored in slice
  order, by the task's own thread).
"""

import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction

from apps.cases.worklist import worklist_priority_deferred
from apps.scans import services
from apps.scans.media import is_missing_object
from apps.scans.models import Scan
from clinic_platform.logcontext import scan_context
from mri.intake.colour_evidence import with_colour_evidence
from mri.intake.decode import Decoded, decode_timed
from workers import metrics, task_names
from workers.celery_policy import inference_task, maintenance_task
from workers.study_lanes import LaneSlice, chunks, run_chunk

logger = logging.getLogger(__name__)


def _get_analyzer() -> Any:
    from workers.runtime import get_analyzer  # lazy: loads TensorFlow; one model per process

    analyzer = get_analyzer()
    metrics.model_loaded(analyzer)
    return analyzer


def _loaded_analyzer() -> Any:
    """The process's model, or None when loading it fails: the analysis then records that error
    on each scan (each lane's slices try again to load it)."""
    try:
        return _get_analyzer()
    except Exception:
        return None


def _batch_preferred(analyzer: Any) -> bool:
    """GPU workers batch a study's slices; CPU workers do them one by one (measured faster)."""
    return analyzer is not None and bool(getattr(analyzer, "batch_preferred", True))


def _redelivered(task: Task) -> bool:
    return bool((task.request.delivery_info or {}).get("redelivered"))


def _claim(scan_id: int, redelivered: bool) -> Scan | None:
    scan = services.scan_claim(scan_id=scan_id, redelivered=redelivered)
    if scan is None:
        logger.info("scan %s: not queued, nothing to do", scan_id, extra={"scan_id": scan_id})
        metrics.scan_finished("skipped")
    else:
        logger.info("scan %s: claimed, attempt %s", scan_id, scan.attempts, extra={"scan_id": scan_id})
    return scan


def _read(scan: Scan) -> bytes:
    """The uploaded file from storage; FileNotFoundError when it is not there (disk or S3)."""
    try:
        with metrics.stage("storage"), scan.image.open("rb") as handle:
            return handle.read()
    except Exception as exc:
        if is_missing_object(exc) and not isinstance(exc, FileNotFoundError):
            raise FileNotFoundError(scan.image.name) from exc
        raise


def _store(scan: Scan, result: Any, data: bytes) -> str:
    """Store one result; the outcome ("done", "rejected", "superseded", "failed"). A slice the
    out-of-distribution gate flags ends `rejected` with no prediction, on either task's path;
    so does a colour image (mri/intake/colour_evidence.py: MRI slices are grey)."""
    result = with_colour_evidence(result, data)
    if getattr(result, "out_of_distribution", False):
        with metrics.stage("storage"):
            rejected = services.scan_reject(scan=scan, result=result)
        metrics.observe_timings(result.timings_ms)
        metrics.model_version(str(result.model_version))
        outcome = "rejected" if rejected else "superseded"
        logger.info(
            "scan %s: %s, not a brain MRI slice (ood score %.2f)", scan.pk, outcome, result.ood_score,
            extra={"scan_id": scan.pk, "timings_ms": dict(result.timings_ms or {})},
        )  # fmt: skip
        return outcome
    try:
        with metrics.stage("storage"):
            prediction = services.scan_complete(scan=scan, result=result)
    except services.ModelOutputError:
        services.scan_fail(scan=scan, error="The model returned an unusable result; the team has been notified.")
        logger.exception("scan %s: failed, model output outside the contract", scan.pk)
        return "failed"
    if prediction is not None and prediction.heatmap_label != prediction.label:
        _store_opening_heatmap(prediction, data, result)
    metrics.observe_timings(result.timings_ms)
    metrics.model_version(str(result.model_version))
    outcome = "done" if prediction is not None else "superseded"
    logger.info(
        "scan %s: %s label=%s", scan.pk, outcome, getattr(prediction, "label", "-"),
        extra={"scan_id": scan.pk, "timings_ms": dict(result.timings_ms or {})},
    )  # fmt: skip
    return outcome


def _store_opening_heatmap(prediction: Any, data: bytes, result: Any) -> None:
    """The map the card opens on when it is not the predicted class's (an unreassuring "No
    tumour": Prediction.heatmap_label), stored now, so opening a study's page publishes no task
    per slice: the analysis's own `tumour_heatmap` when it made that class's (asked for with
    `unvalidated`, or at low confidence), else `explain()` with the model and bytes at hand
    (a result at the confidence threshold's edge). A failure leaves the scan done: the page then
    asks for the map as for any other class."""
    from mri.model.overlays import encode_heatmap_png

    try:
        analyzer = _get_analyzer()
        ready = getattr(result, "tumour_heatmap", None)
        if ready is None or getattr(result, "tumour_label", "") != prediction.heatmap_label:
            ready = analyzer.explain(data, prediction.heatmap_label)
        png = encode_heatmap_png(ready)
        services.class_heatmap_store(
            prediction=prediction, label=prediction.heatmap_label, png=png, model_version=analyzer.model_version
        )
    except SoftTimeLimitExceeded:  # the task's own limit: handled where the task handles it
        raise
    except Exception:  # the scan's result stands; the map is asked for again when shown
        logger.exception("scan %s: the %s heatmap the card opens on was not stored", prediction.scan_id,
                         prediction.heatmap_label)


def _unvalidated(scan: Scan, analyzer: Any) -> bool:
    """Is the scan's sequence one the model is not validated for (known before the analysis)? Then
    a "No tumour" on it opens on a tumour class's map, which the analysis makes in the same pass.
    `analyzer`: the process's model, or None when it failed to load (its error is each scan's).
    Never raises: a speed-up only (without it the task stores that map with `explain()`)."""
    version = str(getattr(analyzer, "model_version", ""))
    try:
        return bool(version) and services.prediction_validated(scan=scan, model_version=version) is False
    except Exception:
        logger.warning("scan %s: its sequence's validation could not be read", scan.pk, exc_info=True)
        return False


def _text_in(data: bytes, keep: Callable[[Decoded], None] | None = None) -> str:
    """The text burnt into the image's pixels, "" when none, or when the image cannot be read
    (the analysis fails it with its own message). No database: it runs on a study task's
    text-check thread too. `keep`: handed the decoded pixels (a GPU study task's check thread
    keeps them for the one batch, so each slice is decoded once)."""
    from mri.intake.burnt_text import burnt_in_text
    from mri.intake.limits import ScanDecodeError

    with metrics.stage("text_check"):
        try:
            pixels = decode_timed(data)
        except ScanDecodeError:
            return ""
        if keep is not None:
            keep(pixels)
        return burnt_in_text(pixels.gray)


def _texts_in(grays: list[np.ndarray]) -> list[str]:
    """`_text_in` of several decoded slices (a lane's chunk), read by one Tesseract reader."""
    from mri.intake.burnt_text import burnt_in_texts

    with metrics.stage("text_check", slices=len(grays)):
        return burnt_in_texts(grays)


def _held_for_text(
    scan: Scan, data: bytes, text: Future[str] | None = None, keep: Callable[[Decoded], None] | None = None
) -> bool:
    """Hold the scan when text is burnt into its pixels (a name, a date), unless a person already
    released it; True when held (or lost to another attempt). Just before analysis, in the
    worker, so no upload path can skip it. `text`: the check already started on `data` (a GPU
    study task's text-check thread, or a CPU study task's lane); its error, if any, is raised here.
    `keep`: handed the pixels the check decodes (as `_text_in`'s), for the analysis to reuse."""
    from apps.scans.holds import scan_hold

    if scan.burnt_text_released:
        return False
    if not (text.result() if text is not None else _text_in(data, keep)):
        return False
    scan_hold(scan=scan)
    return True


def _analyze_one(
    scan: Scan, data: bytes | None, *, text_checked: bool = False, analysis: Future[Any] | None = None
) -> str:
    """Read (unless given), analyse and store one claimed scan, recording every failure on it.
    `text_checked`: the caller already ran the burnt-in text check on `data` (the batch path).
    `analysis`: the analysis of `data` already started on a lane (workers/study_lanes.py); its error, if
    any, is recorded here like one raised on this thread."""
    from mri.intake.limits import ScanDecodeError

    scan_id = scan.pk
    try:
        if data is None:
            data = _read(scan)
        checked: list[Decoded] = []  # the pixels the text check decoded: the analysis reads them
        if not text_checked and _held_for_text(scan, data, keep=checked.append):
            return "held"
        if analysis is not None:
            result = analysis.result()
        else:
            analyzer = _get_analyzer()
            result = analyzer.analyze(data, checked[0] if checked else None, _unvalidated(scan, analyzer))
        if result is None:  # the lane found text this thread did not hold: never store unchecked
            raise RuntimeError("the analysis lane and the task disagree on the burnt-in text check")
        return _store(scan, result, data)
    except ScanDecodeError as exc:
        services.scan_fail(scan=scan, error=exc.args[0] if exc.args else "The image cannot be read.")
        logger.info("scan %s: failed, unreadable image: %s", scan_id, exc)
        return "failed"
    except SoftTimeLimitExceeded:
        services.scan_fail(scan=scan, error="The analysis took too long and was stopped.")
        logger.warning("scan %s: failed, soft time limit", scan_id)
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


@inference_task(bind=True, name=task_names.ANALYZE_SCAN)
def analyze_scan(self: Task, scan_id: int) -> str:
    """Analyse one scan. Idempotent: a scan that is done, failed, rejected, deleted or (for a first
    delivery) taken by another worker is left alone, so a duplicate message does nothing.

    A message the broker delivered again after its worker died (acks_late +
    reject_on_worker_lost) takes over a scan left in processing, as a new attempt, so the
    scan does not wait for the sweep (scan_claim; SCAN_MAX_ATTEMPTS still applies)."""
    with scan_context(scan_id):
        scan = _claim(scan_id, _redelivered(self))
        if scan is None:
            return "skipped"
        with worklist_priority_deferred():  # one refresh for the prediction and the status
            outcome = _analyze_one(scan, None)
        metrics.scan_finished(outcome)
        return outcome


@inference_task(bind=True, name=task_names.ANALYZE_SCANS)
def analyze_scans(self: Task, scan_ids: Sequence[int]) -> dict[str, str]:
    """The slices of one study in one forward/backward pass (`analyze_batch`); the same
    claims, idempotency and failure handling per scan as `analyze_scan`. If the batch cannot be
    analysed as a whole (an unreadable slice, an error), each slice is analysed on its own, so
    one bad slice fails alone with its own message. Returns scan id → outcome.

    On a GPU worker the burnt-in text checks run on a thread of their own, in slice order, ahead
    of the one pass. On a CPU worker the slices go in chunks of STUDY_LANE_BATCH to
    STUDY_ANALYSIS_LANES lane threads at once, each chunk checked (its pages read by one Tesseract reader) and then
    analysed in one `analyze_batch` call (workers/study_lanes.py); the task's thread stores the
    results in slice order as they come, so storing overlaps the analysis of the next chunks.
    The worklist priority of the study's case is refreshed once, at the end of the task, not
    twice per slice."""
    with worklist_priority_deferred():
        return _analyze_batch(scan_ids, _redelivered(self))


def _analyze_batch(scan_ids: Sequence[int], redelivered: bool) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    claimed: list[tuple[Scan, bytes | None]] = []
    texts: dict[int, Future[str]] = {}  # each slice's text check (GPU: started once read; CPU: its lane's)
    decoded: dict[int, Decoded] = {}  # GPU: each slice's pixels, kept by its check for the one pass
    analyzer = _loaded_analyzer()  # once, before the claims; None: each slice records the error
    batch_preferred = _batch_preferred(analyzer)
    checks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="text-check")
    # A GPU worker's fallback (a batch that failed) stays one slice at a time on the device.
    lanes = ThreadPoolExecutor(
        max_workers=1 if batch_preferred else max(1, settings.STUDY_ANALYSIS_LANES), thread_name_prefix="analysis"
    )
    try:
        with transaction.atomic():  # the batch's claims in one commit, not one per slice
            claims = []
            for scan_id in scan_ids:
                with scan_context(scan_id):
                    claims.append((scan_id, _claim(scan_id, redelivered)))
        for scan_id, scan in claims:
            with scan_context(scan_id):
                if scan is None:
                    outcomes[str(scan_id)] = "skipped"
                    continue
                try:
                    data: bytes | None = _read(scan)
                except Exception:  # read again, and the failure recorded, by _analyze_one
                    data = None
                if batch_preferred and data is not None and not scan.burnt_text_released:
                    texts[scan.pk] = checks.submit(_text_in, data, functools.partial(decoded.__setitem__, scan.pk))
                claimed.append((scan, data))

        def unheld(scan: Scan, data: bytes | None) -> tuple[bool, bytes | None]:
            """(held, data): data None when the check failed (checked again, and the failure
            recorded, by _analyze_one)."""
            if data is None:
                return False, None
            with scan_context(scan.pk):
                try:
                    held = _held_for_text(scan, data, texts.get(scan.pk))
                except Exception:
                    return False, None
                if held:
                    metrics.scan_finished("held")
                    outcomes[str(scan.pk)] = "held"
                return held, data

        results = None
        if batch_preferred:  # every slice's check first (a lone slice too): one pass for the rest
            checked = [(scan, unheld(scan, data)) for scan, data in claimed]
            claimed = [(scan, data) for scan, (held, data) in checked if not held]
            readable = [(scan, data) for scan, data in claimed if data is not None]
            if len(readable) > 1 and len(readable) == len(claimed):
                try:
                    # Every check is done (unheld waited on each): their pixels, unless a
                    # slice was not checked (released by a person), then the bytes again.
                    pixels = [decoded.get(scan.pk) for scan, _ in readable]
                    results = analyzer.analyze_batch(  # loaded: a batch is preferred
                        [data for _, data in readable],
                        decoded=None if any(p is None for p in pixels) else pixels,
                        unvalidated=[_unvalidated(scan, analyzer) for scan, _ in readable],
                    )
                except SoftTimeLimitExceeded:
                    for scan, _ in claimed:
                        services.scan_fail(scan=scan, error="The analysis took too long and was stopped.")
                        metrics.scan_finished("failed")
                        outcomes[str(scan.pk)] = "failed"
                    logger.warning("batch of scans %s: failed, soft time limit", [s.pk for s, _ in claimed])
                    return outcomes
                except Exception:
                    ids = [s.pk for s, _ in readable]
                    logger.warning("batch of scans %s: analysing one by one", ids, exc_info=True)
            texts.clear()  # every check is done and used
            decoded.clear()
        analyses: dict[int, Future[Any]] = {}  # on lanes: each slice's analysis, in slice order
        if results is None:
            on_lanes = []
            for scan, data in claimed:
                if data is not None:  # on a GPU worker checked above (held ones gone), one slice per call
                    item = LaneSlice(
                        data,
                        checked=not batch_preferred and not scan.burnt_text_released,
                        unvalidated=_unvalidated(scan, analyzer),
                    )
                    analyses[scan.pk] = item.analysis
                    if item.checked:
                        texts[scan.pk] = item.text
                    on_lanes.append(item)
            for chunk in chunks(on_lanes, 1 if batch_preferred else settings.STUDY_LANE_BATCH):
                lanes.submit(run_chunk, chunk, _get_analyzer, _texts_in)
        for index, (scan, data) in enumerate(claimed):
            if results is None and scan.pk in texts:
                held, data = unheld(scan, data)
                if held:
                    continue
                if data is None and scan.pk in analyses:  # the check failed: _analyze_one starts over
                    analyses[scan.pk].cancel()
            with scan_context(scan.pk):
                if results is not None:
                    outcome = _store(scan, results[index], data)
                else:  # slices read here passed the text check; the others are checked there
                    analysis = analyses.get(scan.pk) if data is not None else None
                    outcome = _analyze_one(scan, data, text_checked=data is not None, analysis=analysis)
                metrics.scan_finished(outcome)
                outcomes[str(scan.pk)] = outcome
        return outcomes
    finally:
        # Work not started is dropped (every scan's outcome is recorded above); a call still
        # running (a hung Tesseract, a soft time limit) is not waited for.
        checks.shutdown(wait=False, cancel_futures=True)
        lanes.shutdown(wait=False, cancel_futures=True)


@inference_task(bind=True, name=task_names.INGEST_STUDY)
def ingest_study(self: Task, study_id: int) -> str:
    """Unpack one DICOM study upload (apps/scans/studies.py): validate, decode, de-identify and
    split it into scans in one transaction, then queue their analysis in batches. Idempotent: a
    study already unpacked or failed is left alone; a redelivery after a dead worker starts over
    (nothing of a killed attempt was committed) or fails it clearly after SCAN_MAX_ATTEMPTS."""
    from apps.scans import studies

    study = studies.study_claim(study_id=study_id, redelivered=_redelivered(self))
    if study is None:
        return "skipped"
    try:
        return studies.study_unpack(study=study)
    except SoftTimeLimitExceeded:
        studies.study_fail(study=study, error="Unpacking the study took too long and was stopped; nothing was stored.")
        return "failed"
    except Exception as exc:
        error = f"The study could not be unpacked ({type(exc).__name__})."
        status = studies.study_retry_or_fail(study=study, error=error)
        logger.exception("study upload %s: attempt %s failed, now %s", study_id, study.attempts, status or "superseded")
        return "retry" if status == "received" else "failed"


@inference_task(name=task_names.EXPLAIN_SCAN)
def explain_scan(heatmap_id: int) -> str:
    """Compute and store the heatmap of one class for an analysed scan (services.scan_class_heatmap
    publishes it). Idempotent: a heatmap already stored, or whose scan is gone, is left alone."""
    from apps.scans.models import ClassHeatmap
    from mri.intake.limits import ScanDecodeError
    from mri.model.overlays import encode_heatmap_png

    heatmap = ClassHeatmap.objects.select_related("prediction__scan").filter(pk=heatmap_id).first()
    if heatmap is None or heatmap.is_ready:
        return "skipped"
    try:
        with heatmap.prediction.scan.image.open("rb") as handle:
            data = handle.read()
        analyzer = _get_analyzer()
        png = encode_heatmap_png(analyzer.explain(data, heatmap.label))
        services.class_heatmap_complete(heatmap=heatmap, png=png, model_version=analyzer.model_version)
    except (ScanDecodeError, FileNotFoundError) as exc:
        services.class_heatmap_fail(heatmap=heatmap, error=f"The scan's image cannot be read ({exc}).")
        return "failed"
    except SoftTimeLimitExceeded:
        services.class_heatmap_fail(heatmap=heatmap, error="Computing the heatmap took too long.")
        return "failed"
    except Exception as exc:  # asked again after services.CLASS_HEATMAP_RETRY_AFTER
        services.class_heatmap_fail(heatmap=heatmap, error=f"The heatmap could not be computed ({type(exc).__name__}).")
        logger.exception("class heatmap %s: failed", heatmap_id)
        return "failed"
    logger.info("class heatmap %s (%s) for scan %s: stored", heatmap_id, heatmap.label, heatmap.prediction.scan_id)
    return "done"


@maintenance_task(name=task_names.REQUEUE_STALE_SCANS)
def requeue_stale_scans() -> dict[str, int]:
    """Beat runs this every minute (settings CELERY_BEAT_SCHEDULE) on the "maintenance" queue;
    also `manage.py requeue_stale_scans`."""
    from apps.scans.studies import studies_requeue_stale

    report = services.scans_requeue_stale()
    studies = studies_requeue_stale()
    return {"requeued": report.requeued, "published": report.published, "failed": report.failed, "studies": studies}


@maintenance_task(name=task_names.PURGE_DELETED_CASES)
def purge_deleted_cases() -> dict[str, int]:
    """Beat runs this every CASE_PURGE_INTERVAL_SECONDS on the "maintenance" queue: cases
    soft-deleted more than CASE_RETENTION_DAYS ago go for good, with their scans and files."""
    from apps.cases.services import cases_purge_deleted

    return {"purged": cases_purge_deleted()}
