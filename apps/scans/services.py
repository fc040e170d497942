"""Writes for scans: upload, queueing, the worker's state transitions, review, the sweep.

State machine (stored on Scan): queued → processing → done | failed | rejected (not a brain
MRI slice, by the model's out-of-distribution gate: no prediction is stored). The Celery task in
workers/tasks.py only orchestrates; every transition is one of the functions below.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.accounts.models import User
from apps.cases.models import Case
from mri.intake.sequence import UNKNOWN as UNKNOWN_SEQUENCE
from mri.intake.sequence import (
    SequenceGuess,
    card_validated_sequences,
    dataset_attributes,
    infer_from_dicom,
    is_validated,
)
from mri.model.overlays import encode_heatmap_png
from mri.results import AnalysisResult

from .ingest import DicomSlice, ImageItem, Skipped, UploadRefused, check_uploads
from .ingest import sha256 as ingest_sha256
from .labels import MODEL_LABELS, READING_LABELS, Label
from .models import ClassHeatmap, Prediction, Scan, ScanReview, ScanStatus, StudyUpload, _original_path

logger = logging.getLogger(__name__)


class ModelOutputError(ValueError):
    """The analyzer returned something outside its contract (a bug, not a transient error)."""


@dataclass(frozen=True)
class UploadOutcome:
    """The scans one request created (JPEG/PNG, at once), what it skipped (zip members that are
    not MR DICOM) and the DICOM studies it received (unpacked into scans by a worker job)."""

    scans: list[Scan]
    skipped: list[Skipped]
    studies: list[StudyUpload] = field(default_factory=list)


def _uid_key() -> str:
    return settings.DICOM_UID_KEY or hashlib.sha256(f"dicom-uid:{settings.SECRET_KEY}".encode()).hexdigest()


def _new_scan(*, case: Case, uploaded_by: User, item: ImageItem | DicomSlice) -> Scan:
    if isinstance(item, DicomSlice):
        scan = Scan(
            case=case,
            uploaded_by=uploaded_by,
            original_filename=item.name[-255:],
            sha256=ingest_sha256(item.dicom),
            size_bytes=len(item.dicom),
            width=item.width,
            height=item.height,
            format="DICOM",
            series_uid=item.series_uid[:64],
            slice_order=item.slice_order,
            instance_number=item.instance_number,
            source_patient_id=item.source_patient_id,
            exam_date=item.exam_date,
            series_description=item.series_description[:64],
        )
        guess = dicom_sequence(item.dicom)
        scan.sequence, scan.sequence_source = guess.sequence, guess.source
        scan.image.save("scan", ContentFile(item.png), save=False)
        scan.dicom.save("scan", ContentFile(item.dicom), save=False)
        return scan
    scan = Scan(
        case=case,
        uploaded_by=uploaded_by,
        original_filename=item.name,
        sha256=ingest_sha256(item.data),
        size_bytes=len(item.data),
        width=item.width,
        height=item.height,
        format=item.format,
    )
    scan.image.save("scan", ContentFile(item.data), save=False)
    return scan


def dicom_sequence(dicom: bytes) -> SequenceGuess:
    """The MRI sequence of a stored (de-identified) DICOM slice, from its attributes: the timings
    survive de-identification, and so do the series description and the contrast agent unless
    they named the patient (mri/intake/dicom/deidentify.py's allow-list; mri/intake/sequence.py says
    what an emptied one leaves)."""
    import io

    import pydicom

    try:
        dataset = pydicom.dcmread(io.BytesIO(dicom), stop_before_pixels=True, force=True)
    except Exception:  # a file ingest accepted but pydicom cannot re-read: say unknown
        logger.warning("sequence: the stored DICOM could not be re-read", exc_info=True)
        return UNKNOWN_SEQUENCE
    return infer_from_dicom(dataset_attributes(dataset))


@functools.lru_cache(maxsize=8)
def _validated_sequences(model_version: str) -> tuple[str, ...] | None:
    """The sequences the serving model's card lists as validated; None when the card is not the
    one that produced `model_version` (then no claim is made either way)."""
    import os

    from mri.card import DEFAULT_MODEL_DIR, read_card

    try:
        card = read_card(os.environ.get("MODEL_DIR") or DEFAULT_MODEL_DIR)
    except Exception:
        return None
    return card_validated_sequences(card) if card.get("version") == model_version else None


def prediction_validated(*, scan: Scan, model_version: str) -> bool | None:
    return is_validated(scan.sequence, _validated_sequences(model_version))


def scans_upload(
    *, case: Case, uploaded_by: User, uploads: Sequence[UploadedFile], addendum: str = "", study: bool = False
) -> UploadOutcome:
    """THE intake entry point (pages, API, the PACS receiver): store what one request uploaded
    (JPEG/PNG, DICOM files, zipped DICOM studies) for a case and queue the work after the commit.

    Everything is checked before anything is written (apps/scans/ingest.py `check_uploads`), so
    one bad file refuses the whole request with every problem listed. JPEG/PNG become scans at
    once. DICOM is a study, a unit of work: the request reads its HEADERS only (no pixel is
    decoded here), budgets the whole request from them, stores the original bytes as they came
    (one StudyUpload) and returns; a worker job (`study_unpack`) decodes, de-identifies and
    splits it, then its slices are analysed in batches. A failure while saving removes the
    files already written and rolls back the rows. A signed case takes new scans only with an
    `addendum` saying why, kept on the case.

    `study=True` makes the request's JPEG/PNG files one study too (one batch); otherwise each is
    its own message, and several workers share the upload.
    """
    if uploaded_by.clinic_id is None or case.clinic_id != uploaded_by.clinic_id:
        raise PermissionDenied("This case belongs to another clinic.")
    if not uploads:
        raise ValidationError("Choose at least one scan to upload.")
    if case.is_signed and not uploaded_by.can_review:
        from apps.cases.services import ONLY_RADIOLOGISTS_ADD_ADDENDA

        raise PermissionDenied(ONLY_RADIOLOGISTS_ADD_ADDENDA)
    if case.is_signed and not addendum.strip():
        raise ValidationError({"addendum": "This case is signed: new scans need an addendum saying why."})
    try:
        checked = check_uploads(uploads)
    except UploadRefused as exc:
        raise ValidationError([ValidationError(problem, code=exc.code) for problem in exc.problems]) from exc

    written: list[str] = []
    studies: list[StudyUpload] = []
    try:
        with transaction.atomic():
            # Locked, so a sign-off cannot slip between this check and the new rows.
            locked = Case.objects.select_for_update().get(pk=case.pk)
            if locked.is_signed:
                if not addendum.strip():
                    raise ValidationError({"addendum": "This case is signed: new scans need an addendum saying why."})
                from apps.cases.services import case_addendum_add

                case_addendum_add(case=locked, author=uploaded_by, text=addendum)
            scans = []
            for item in checked.images:
                scan = _new_scan(case=case, uploaded_by=uploaded_by, item=item)
                written.append(scan.image.name)
                scan.save()
                logger.info(
                    "scan %s: stored %s (%s %dx%d, %d bytes) for case %s", scan.pk, scan.image.name, scan.format,
                    scan.width, scan.height, scan.size_bytes, case.pk, extra={"scan_id": scan.pk},
                )  # fmt: skip
                scans.append(scan)
            if checked.sources:
                studies.append(_study_receive(case=case, uploaded_by=uploaded_by, checked=checked, written=written))
            singles, groups = _analysis_groups(scans, study=study)
            study_ids = [received.pk for received in studies]

            # After commit: a worker must never look for a row that is not there yet.
            def publish() -> None:
                _enqueue_groups(singles, groups)
                from .studies import study_enqueue

                for study_id in study_ids:
                    study_enqueue(study_id=study_id)

            transaction.on_commit(publish, robust=True)
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise
    return UploadOutcome(scans=scans, skipped=checked.skipped, studies=studies)


def study_receive(
    *, case: Case, uploaded_by: User, files: Sequence[UploadedFile | tuple[str, bytes]], addendum: str = ""
) -> UploadOutcome:
    """`scans_upload` for callers holding bytes (the PACS receiver): `files` are UploadedFiles
    or (name, bytes) pairs; a DICOM series of one association should come in one call, so it
    is one study."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    uploads = [f if not isinstance(f, tuple) else SimpleUploadedFile(f[0], f[1]) for f in files]
    return scans_upload(case=case, uploaded_by=uploaded_by, uploads=uploads, addendum=addendum)


def _study_receive(*, case: Case, uploaded_by: User, checked: Any, written: list[str]) -> StudyUpload:
    """The request's DICOM sources stored as they came (no decoding), as one StudyUpload."""
    received = StudyUpload(
        case=case,
        uploaded_by=uploaded_by,
        slices_expected=checked.slices,
        skipped=[vars(item) for item in checked.skipped],
    )
    sources = []
    for source in checked.sources:
        source.upload.seek(0)
        path = default_storage.save(_original_path(received, source.name), source.upload)
        written.append(path)
        sources.append({"name": source.name, "path": path, "kind": source.kind})
    received.sources = sources
    received.save()
    logger.info(
        "study upload %s: received %d file(s), %d slice(s) declared, for case %s", received.pk, len(sources),
        checked.slices, case.pk,
    )  # fmt: skip
    return received


def _analysis_groups(scans: Sequence[Scan], *, study: bool) -> tuple[list[int], list[list[int]]]:
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


def _enqueue_groups(singles: list[int], studies: list[list[int]]) -> None:
    scans_enqueue(scan_ids=singles)
    for ids in studies:
        scans_enqueue_study(scan_ids=ids)


def scans_submit(
    *, case: Case, uploaded_by: User, uploads: Sequence[UploadedFile], addendum: str = "", study: bool = False
) -> list[Scan]:
    """The scans of scans_upload, without the skipped list."""
    return scans_upload(case=case, uploaded_by=uploaded_by, uploads=uploads, addendum=addendum, study=study).scans


def scan_submit(*, case: Case, uploaded_by: User, upload: UploadedFile) -> Scan:
    """One scan; see scans_submit."""
    return scans_submit(case=case, uploaded_by=uploaded_by, uploads=[upload])[0]


def scan_enqueue(*, scan_id: int) -> bool:
    """Publish the analysis task. False when the broker is unreachable: the scan stays queued
    (the page says it is waiting) and the sweep publishes it again later."""
    from workers.tasks import analyze_scan  # the tasks module imports this one

    try:
        analyze_scan.apply_async(args=[scan_id], retry=False)
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
    from workers.tasks import analyze_scans

    published = 0
    size = max(1, settings.SCAN_BATCH_SIZE)
    for start in range(0, len(scan_ids), size):
        chunk = list(scan_ids[start : start + size])
        try:
            analyze_scans.apply_async(args=[chunk], retry=False)
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


def worker_identity() -> str:
    """This process as "host:pid", stored on the scan it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
            owned = Scan.objects.filter(pk=scan_id, status=ScanStatus.PROCESSING, attempts=scan.attempts)
            if scan.attempts >= settings.SCAN_MAX_ATTEMPTS:
                owned.update(
                    status=ScanStatus.FAILED,
                    finished_at=timezone.now(),
                    error=f"The analysis did not finish after {settings.SCAN_MAX_ATTEMPTS} attempts.",
                )
                logger.warning(
                    "scan %s: redelivered after %s attempts, failed", scan_id, scan.attempts, extra={"scan_id": scan_id}
                )
                return None
            claimed = owned.update(
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
    written: list[str] = []
    try:
        with transaction.atomic():
            current = Scan.objects.select_for_update().filter(pk=scan.pk).first()
            if current is None or current.status != ScanStatus.PROCESSING or current.attempts != scan.attempts:
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
            current.ood_score = _ood_score(result)
            current.save(update_fields=["status", "finished_at", "error", "ood_score"])
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise
    return prediction


def _ood_score(result: AnalysisResult) -> float | None:
    score = getattr(result, "ood_score", None)
    return float(score) if score is not None and math.isfinite(score) else None


def rejection_message(result: AnalysisResult) -> str:
    if getattr(result, "ood_reason", ""):
        return result.ood_reason
    return (
        "This does not look like a brain MRI slice (its out-of-distribution score is "
        f"{result.ood_score:.1f}, beyond what the brain MRI slices the model was trained on reach): "
        "no tumour label is given."
    )


def scan_reject(*, scan: Scan, result: AnalysisResult) -> bool:
    """processing → rejected: the out-of-distribution gate says this is not a brain MRI slice.
    No prediction, heatmap or overlay is stored; `error` says why. False if this attempt lost
    the scan."""
    updated = Scan.objects.filter(pk=scan.pk, status=ScanStatus.PROCESSING, attempts=scan.attempts).update(
        status=ScanStatus.REJECTED,
        error=rejection_message(result),
        ood_score=_ood_score(result),
        finished_at=timezone.now(),
    )
    return bool(updated)


def scan_fail(*, scan: Scan, error: str) -> bool:
    """processing → failed with a message for the user. False if this attempt lost the scan."""
    updated = Scan.objects.filter(pk=scan.pk, status=ScanStatus.PROCESSING, attempts=scan.attempts).update(
        status=ScanStatus.FAILED, error=error[:2000], finished_at=timezone.now()
    )
    return bool(updated)


def scan_retry_or_fail(*, scan: Scan, error: str) -> str:
    """After an error that may be transient (out of GPU memory, a worker misconfigured): back
    to queued for the sweep to publish again, or failed once SCAN_MAX_ATTEMPTS are spent.
    Returns the new status, or "" if this attempt no longer owns the scan."""
    owned = Scan.objects.filter(pk=scan.pk, status=ScanStatus.PROCESSING, attempts=scan.attempts)
    if scan.attempts >= settings.SCAN_MAX_ATTEMPTS:
        return ScanStatus.FAILED if scan_fail(scan=scan, error=error) else ""
    updated = owned.update(
        status=ScanStatus.QUEUED,
        started_at=None,
        enqueued_at=None,  # the next sweep publishes it again
        error=f"Attempt {scan.attempts} failed; it will be retried. ({error})"[:2000],
    )
    return ScanStatus.QUEUED if updated else ""


def scan_review(
    *,
    scan: Scan,
    reviewer: User,
    agrees: bool,
    label: str = "",
    note: str = "",
    addendum: str = "",
    reading_required: bool = True,
) -> ScanReview:
    """Record a radiologist's reading of an analysed scan: agreement with the model, or the
    label the scan really shows (`labels.READING_LABELS`, "other" included), and a note.

    Every review is a new row; the scan points at the latest, which is the one that counts.
    On a signed case the review needs an `addendum` saying why, which is kept on the case.
    This is the one place reviews are written (pages and API both call it).
    `reading_required=False` is for the first review endpoint's clients only: their
    disagreement may not say what the scan shows (counted in agreement, not in the confusion
    matrix or the readings export).
    """
    if reviewer.clinic_id is None or scan.case.clinic_id != reviewer.clinic_id:
        raise PermissionDenied("This scan belongs to another clinic.")
    if not reviewer.can_review:
        raise PermissionDenied("Only radiologists can review predictions.")
    if scan.status != ScanStatus.DONE:
        raise ValidationError("Only an analysed scan can be reviewed.")
    model_label = scan.prediction.label
    label = (label or "").strip()
    if label and label not in READING_LABELS:
        choices = ", ".join(f"{value} ({Label.name_of(value)})" for value in READING_LABELS)
        raise ValidationError({"label": f"Unknown reading {label!r}; choose one of {choices}."})
    if agrees:
        if label and label != model_label:
            raise ValidationError(
                {"label": f"You agree with {Label.name_of(model_label)} but read {Label.name_of(label)}: choose one."}
            )
        label = model_label
    elif not label and reading_required:
        raise ValidationError({"label": "Say what the scan shows: choose the reading that replaces the model's."})
    elif label == model_label:
        raise ValidationError(
            {"label": f"The model also says {Label.name_of(label)}: record agreement, or choose another reading."}
        )
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=scan.case_id)  # serialises with case_sign
        note_for_addendum = addendum.strip()
        kept_addendum = None
        if case.is_signed:
            if not note_for_addendum:
                raise ValidationError(
                    {"addendum": "This case is signed: a new reading needs an addendum saying why."}
                )
            from apps.cases.services import case_addendum_add

            kept_addendum = case_addendum_add(case=case, author=reviewer, text=note_for_addendum)
        review = ScanReview.objects.create(
            scan=scan,
            reviewer=reviewer,
            agrees=agrees,
            label=label,
            note=note.strip(),
            reviewed_at=timezone.now(),
            addendum=kept_addendum,
        )
        Scan.objects.filter(pk=scan.pk).update(review=review)
    scan.review = review
    return review


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
    failed = Scan.objects.filter(
        dead, status=ScanStatus.PROCESSING, attempts__gte=settings.SCAN_MAX_ATTEMPTS
    ).update(
        status=ScanStatus.FAILED,
        finished_at=now,
        error=f"The analysis did not finish after {settings.SCAN_MAX_ATTEMPTS} attempts.",
    )
    revived = list(
        Scan.objects.filter(dead, status=ScanStatus.PROCESSING).values_list("pk", flat=True)[:limit]
    )
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


# A class heatmap asked for but not finished after this long (a lost message, a worker that
# died) is published again by the next request for it; so is one that failed.
CLASS_HEATMAP_RETRY_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class ClassHeatmapState:
    """What `GET /api/scans/{id}/heatmaps/{label}/` answers: a file, "pending" or "failed"."""

    status: str  # "ready" | "pending" | "failed"
    file: Any = None  # the PNG's FieldFile when ready
    error: str = ""


def scan_class_heatmap(*, scan: Scan, label: str) -> ClassHeatmapState:
    """The heatmap of class `label` for an analysed scan: the prediction's own map for the
    predicted class, a stored one, or a worker task published to compute and store it.

    The caller has already checked the clinic (selectors.scan_get)."""
    if label not in MODEL_LABELS:
        raise ValidationError(f"Unknown class {label!r}; one of: {', '.join(str(m) for m in MODEL_LABELS)}.")
    prediction = getattr(scan, "prediction", None) if scan.status == ScanStatus.DONE else None
    if prediction is None:
        raise ValidationError("This scan has not been analysed yet.")
    if label == prediction.label:
        return ClassHeatmapState("ready", file=prediction.heatmap)
    heatmap, created = ClassHeatmap.objects.get_or_create(prediction=prediction, label=label)
    if heatmap.is_ready:
        return ClassHeatmapState("ready", file=heatmap.image)
    stale = timezone.now() - heatmap.requested_at > CLASS_HEATMAP_RETRY_AFTER
    if heatmap.error and not stale:
        return ClassHeatmapState("failed", error=heatmap.error)
    if created or stale:
        # Claim the publication: of two requests racing on a stale row, one publishes.
        claimed = ClassHeatmap.objects.filter(pk=heatmap.pk, requested_at=heatmap.requested_at).update(
            requested_at=timezone.now(), error=""
        )
        if created or claimed:
            _publish_class_heatmap(heatmap_id=heatmap.pk)
    return ClassHeatmapState("pending")


def _publish_class_heatmap(*, heatmap_id: int) -> None:
    from workers.tasks import explain_scan  # the tasks module imports this one

    def publish() -> None:
        try:
            explain_scan.apply_async(args=[heatmap_id], retry=False)
        except Exception:  # no broker: the next request after CLASS_HEATMAP_RETRY_AFTER tries again
            logger.warning("class heatmap %s: broker unavailable", heatmap_id, exc_info=True)

    transaction.on_commit(publish, robust=True)


def class_heatmap_complete(*, heatmap: ClassHeatmap, png: bytes, model_version: str) -> bool:
    """Store a computed class heatmap (8-bit gray PNG). False if it was stored already."""
    if not png.startswith(b"\x89PNG"):
        raise ModelOutputError("the class heatmap is not a PNG")
    with transaction.atomic():
        current = ClassHeatmap.objects.select_for_update().filter(pk=heatmap.pk).first()
        if current is None or current.is_ready:
            return False
        current.image.save(f"heatmap-{current.label}.png", ContentFile(png), save=False)
        current.model_version, current.error, current.finished_at = model_version, "", timezone.now()
        try:
            current.save(update_fields=["image", "model_version", "error", "finished_at"])
        except BaseException:
            default_storage.delete(current.image.name)
            raise
    return True


def class_heatmap_fail(*, heatmap: ClassHeatmap, error: str) -> None:
    ClassHeatmap.objects.filter(pk=heatmap.pk, image="").update(error=error[:2000], finished_at=timezone.now())
