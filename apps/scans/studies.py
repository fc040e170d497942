"""A DICOM study upload as one unit of work: its state machine, the worker's unpacking, the
sweep, and its progress (issues 15 and 19).

received → unpacking → unpacked (its slices are scans, analysed as usual) | failed
- the web request (services.scans_upload) stores the originals and publishes `ingest_study`;
- the worker claims it (a conditional UPDATE: one worker at a time), decodes, de-identifies and
  splits every file, storing each slice's files as it goes, then creates ALL the scans in ONE
  transaction: a job killed mid-way leaves no scan (never half-done); the broker delivers it
  again (acks_late + reject_on_worker_lost) and the next attempt starts over, or fails it
  clearly once SCAN_MAX_ATTEMPTS are spent; the sweep does the same for a lost message.
  Scans are created once, so each slice is analysed once (scan_claim).
- the originals (PHI inside) are deleted when the study is unpacked or failed.
Progress is the number of its scans analysed (done, failed or not a brain MRI) of the slices
it was split into: it only grows.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.dispatch import Signal
from django.utils import timezone

from apps.audit.models import AuditAction
from apps.audit.services import audit_record

from .ingest import Skipped, slice_sort_key, unpack_source
from .models import Scan, ScanStatus, StudyStatus, StudyUpload

logger = logging.getLogger(__name__)


# Sent inside the transaction that creates an unpacked study's scans, with `study` (the
# StudyUpload) and `scans` in the order they were unpacked (file by file, frame by frame), so
# another app can tie its own rows to them atomically (apps/dicomnet links received instances)
# without this app knowing it. A receiver that raises rolls the unpacking back (retried).
study_unpacked = Signal()

# Sent when a case's progress is read, with `upload_ids` (its study uploads); a receiver
# returns {upload id: group key} for uploads it knows to be parts of one study, which are then
# shown as ONE progress line (apps/dicomnet: each instance received from the network is an
# upload of its own). This app never imports the receivers' apps.
study_progress_groups = Signal()


def study_claim(*, study_id: int, redelivered: bool = False) -> StudyUpload | None:
    """received → unpacking for this worker; a redelivered message (its worker died) takes over
    a study left unpacking as a new attempt, or fails it after SCAN_MAX_ATTEMPTS. None: nothing to do."""
    study = StudyUpload.objects.filter(pk=study_id).first()
    if study is None:
        return None
    now = timezone.now()
    if study.status == StudyStatus.UNPACKING and redelivered:
        owned = StudyUpload.objects.filter(pk=study_id, status=StudyStatus.UNPACKING, attempts=study.attempts)
        if study.attempts >= settings.SCAN_MAX_ATTEMPTS:
            if study_fail(study=study, error=_gave_up()):
                logger.warning("study upload %s: redelivered after %s attempts, failed", study_id, study.attempts)
            return None
        claimed = owned.update(started_at=now, attempts=F("attempts") + 1)
    elif study.status == StudyStatus.RECEIVED:
        claimed = StudyUpload.objects.filter(pk=study_id, status=StudyStatus.RECEIVED).update(
            status=StudyStatus.UNPACKING, started_at=now, error="", attempts=F("attempts") + 1
        )
    else:
        return None
    if not claimed:
        return None
    study.refresh_from_db()
    return study


def _gave_up() -> str:
    return f"The study could not be unpacked after {settings.SCAN_MAX_ATTEMPTS} attempts; nothing of it was stored."


def _delete_originals(study: StudyUpload) -> None:
    for source in study.sources:
        if source.get("path"):
            default_storage.delete(source["path"])


def _without_paths(sources: list[dict]) -> list[dict]:
    return [{**source, "path": ""} for source in sources]


def study_fail(*, study: StudyUpload, error: str) -> bool:
    """→ failed with a message for the user; the originals are deleted. False if this attempt
    no longer owns the study (or it had finished)."""
    owned = StudyUpload.objects.filter(pk=study.pk, status__in=StudyStatus.IN_FLIGHT)
    if study.status == StudyStatus.UNPACKING:
        owned = owned.filter(attempts=study.attempts)
    updated = owned.update(
        status=StudyStatus.FAILED, error=error[:2000], finished_at=timezone.now(), sources=_without_paths(study.sources)
    )
    if updated:
        _delete_originals(study)
    return bool(updated)


def study_retry_or_fail(*, study: StudyUpload, error: str) -> str:
    """After an error that may be transient: back to received (the sweep publishes it again),
    or failed once SCAN_MAX_ATTEMPTS are spent. The new status, "" if no longer ours."""
    if study.attempts >= settings.SCAN_MAX_ATTEMPTS:
        return StudyStatus.FAILED if study_fail(study=study, error=error) else ""
    updated = StudyUpload.objects.filter(pk=study.pk, status=StudyStatus.UNPACKING, attempts=study.attempts).update(
        status=StudyStatus.RECEIVED, enqueued_at=None, error=f"Attempt {study.attempts} failed; it will be retried."
    )
    return StudyStatus.RECEIVED if updated else ""


def study_unpack(*, study: StudyUpload) -> str:
    """The worker's job for a claimed study: decode, de-identify and split every original, then
    create all its scans in one transaction and queue their analysis. Returns "unpacked",
    "failed" (nothing decodable: the reasons are on the study) or "superseded"."""
    from apps.cases.models import Case

    from .services import files
    from .services.publishing import analysis_groups, publish_on_commit
    from .services.upload import _new_scan, _uid_key

    case = study.case
    if case.deleted_at is not None:
        study_fail(study=study, error=CASE_DELETED)
        return "failed"
    uid_key = _uid_key()
    skipped = [Skipped(**item) for item in study.skipped]
    made: list[Scan] = []
    written: list[str] = []

    def store(item) -> None:  # each slice's files go to storage now, its row in the final commit
        scan = _new_scan(case=case, uploaded_by=study.uploaded_by, item=item)
        written.extend(name for name in (scan.image.name, scan.dicom.name) if name)
        scan.study_upload = study
        made.append(scan)

    try:
        with files.removed_on_failure(written):
            for source in study.sources:
                with default_storage.open(source["path"], "rb") as handle:
                    unpack_source(
                        handle,
                        name=source["name"],
                        kind=source["kind"],
                        uid_key=uid_key,
                        skipped=skipped,
                        on_slice=store,
                    )
            # The request listed the zip's passed-over members (a DICOMDIR) and the unpack walks it again.
            skipped[:] = dict.fromkeys(skipped)
            if not made:
                raise _NothingDecoded
            rank: dict[str, int] = {}
            keyed = sorted(
                ((slice_sort_key(rank, scan.series_uid, scan.slice_order, i), scan) for i, scan in enumerate(made)),
                key=lambda pair: pair[0],
            )
            ordered = [scan for _key, scan in keyed]
            with transaction.atomic():
                # The case first, as case_sign locks it: a sign-off waits for these rows (and refuses
                # while a study is unpacking), so no slice slips into a case being signed.
                if Case.objects.select_for_update().filter(pk=case.pk).first() is None:
                    raise _CaseDeleted  # soft-deleted meanwhile (the live manager hides it): no scans there
                current = StudyUpload.objects.select_for_update().get(pk=study.pk)
                if current.status != StudyStatus.UNPACKING or current.attempts != study.attempts:
                    raise _Superseded
                now = timezone.now()
                for scan in ordered:
                    scan.queued_at = now
                    scan.save()
                    audit_record(actor=study.uploaded_by, action=AuditAction.UPLOAD, obj=scan)
                study_unpacked.send(sender=StudyUpload, study=study, scans=list(made))
                StudyUpload.objects.filter(pk=study.pk).update(
                    status=StudyStatus.UNPACKED, slices_total=len(ordered), finished_at=now, error="",
                    skipped=[vars(item) for item in skipped], sources=_without_paths(study.sources),
                )  # fmt: skip
                publish_on_commit(*analysis_groups(ordered, study=False))
    except _NothingDecoded:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in skipped[-5:]) or "no image in it"
        study_fail(study=study, error=f"No MR DICOM image could be read from the upload ({reasons}).")
        return "failed"
    except _Superseded:
        return "superseded"
    except _CaseDeleted:
        return "failed" if study_fail(study=study, error=CASE_DELETED) else "superseded"
    _delete_originals(study)  # after the commit: the scans hold everything kept of them
    logger.info("study upload %s: unpacked into %d scan(s), %d skipped", study.pk, len(ordered), len(skipped))
    return "unpacked"


class _NothingDecoded(Exception):
    """No file of the study held a readable MR DICOM image."""


class _Superseded(Exception):
    """Another attempt owns the study now."""


class _CaseDeleted(Exception):
    """The case was soft-deleted while the study was unpacked."""


CASE_DELETED = "The case was deleted before its study was unpacked; no scan was stored."


def studies_requeue_stale(*, older_than: timedelta | None = None, limit: int = 100) -> int:
    """The sweep's part for studies: a received study whose message was lost, or one left
    unpacking by a dead worker (after the task's hard limit), is published again (or failed
    after SCAN_MAX_ATTEMPTS). Returns how many were published."""
    from .services.publishing import study_enqueue

    now = timezone.now()
    cutoff = now - (older_than or timedelta(minutes=settings.STUDY_REQUEUE_AFTER_MINUTES))
    dead = StudyUpload.objects.filter(
        status=StudyStatus.UNPACKING, started_at__lt=now - timedelta(seconds=settings.SCAN_TASK_TIME_LIMIT + 60)
    )
    for study in dead[:limit]:
        study_retry_or_fail(study=study, error="The worker unpacking the study stopped.")
    stale = StudyUpload.objects.filter(status=StudyStatus.RECEIVED, received_at__lt=cutoff).filter(
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=cutoff)
    )
    published = 0
    for study_id in list(stale.values_list("pk", flat=True)[:limit]):
        if not study_enqueue(study_id=study_id):
            break
        published += 1
    return published


@dataclass(frozen=True)
class StudyProgress:
    """What the case page and the API say about one study upload."""

    id: int
    status: str  # received | unpacking | analysing | held | done | failed
    slices_total: int  # declared by the headers until unpacked, then the slices made (less removed ones)
    slices_done: int  # analysed (done, failed or not a brain MRI)
    skipped: list[dict]
    error: str
    slices_held: int = 0  # held for a person's decision (text burnt into the image)

    @property
    def text(self) -> str:
        if self.status == "failed":
            return f"Study upload failed: {self.error}"
        if self.status in StudyStatus.IN_FLIGHT:
            verb = "waiting to be unpacked" if self.status == "received" else "being unpacked and de-identified"
            return f"Study of {self.slices_total} slice(s) {verb}."
        text = f"{self.slices_done} of {self.slices_total} slices analysed."
        if self.slices_held:
            text += (
                f" {self.slices_held} held for a person's decision (text burnt into the image): a clinic admin "
                "or radiologist releases or discards them."
            )
        return text


def study_progress(
    *, study: StudyUpload, finished: int | None = None, held: int | None = None, removed: int | None = None
) -> StudyProgress:
    """`finished`, `held`, `removed`: the study's live scans analysed, held for a person, and its
    removed scans (counted here unless given). Removed slices leave the total; a study whose
    remaining slices all wait for a person is "held", not "analysing" for ever."""
    if study.status == StudyStatus.UNPACKED:
        if finished is None or held is None or removed is None:
            counts = study_scan_counts(StudyUpload.objects.filter(pk=study.pk)).get()
            finished, held, removed = counts.finished, counts.held, counts.removed
        total = max((study.slices_total or 0) - removed, 0)
        status = "done" if finished >= total else "held" if held and finished + held >= total else "analysing"
    else:
        finished = held = 0
        total, status = study.slices_expected, str(study.status)
    return StudyProgress(
        id=study.pk, status=status, slices_total=total, slices_done=finished, skipped=list(study.skipped),
        error=study.error, slices_held=held,
    )  # fmt: skip


def study_scan_counts(studies: QuerySet[StudyUpload]) -> QuerySet[StudyUpload]:
    """Each study with `finished`, `held` (its live scans) and `removed`: a join does not apply
    Scan's live manager, so removed scans are told apart by hand."""
    from django.db.models import Count

    live = Q(scans__removed_at__isnull=True)
    return studies.annotate(
        finished=Count("scans", filter=live & Q(scans__status__in=ScanStatus.FINISHED)),
        held=Count("scans", filter=live & Q(scans__status=ScanStatus.HELD)),
        removed=Count("scans", filter=Q(scans__removed_at__isnull=False)),
    )


def study_progress_for_case(*, case) -> list[StudyProgress]:
    """Every study upload of a case, oldest first, with its analysed count (one query each way);
    uploads that are parts of one study (`study_progress_groups`) make one line, at the place of
    the first, except a failed part: its own line, with its reason."""
    studies = study_scan_counts(StudyUpload.objects.filter(case=case))
    lines = [
        study_progress(study=study, finished=study.finished, held=study.held, removed=study.removed)
        for study in studies
    ]
    groups: dict[int, str] = {}
    if lines:
        for _receiver, answer in study_progress_groups.send(sender=StudyUpload, upload_ids=[p.id for p in lines]):
            groups.update(answer or {})
    parts: dict[str, list[StudyProgress]] = {}
    shown: list[StudyProgress | str] = []
    for line in lines:
        key = groups.get(line.id) if line.status != "failed" else None
        if key is None:
            shown.append(line)
            continue
        if key not in parts:
            parts[key] = []
            shown.append(key)
        parts[key].append(line)
    return [_merged(parts[item]) if isinstance(item, str) else item for item in shown]


def _merged(parts: list[StudyProgress]) -> StudyProgress:
    """One line for the parts of one study: its slices summed, its state the least advanced."""
    if len(parts) == 1:
        return parts[0]
    statuses = {p.status for p in parts}
    status = next((s for s in ("unpacking", "received", "analysing", "held") if s in statuses), "done")
    return StudyProgress(
        id=parts[0].id, status=status, slices_total=sum(p.slices_total for p in parts),
        slices_done=sum(p.slices_done for p in parts), skipped=[s for p in parts for s in p.skipped], error="",
        slices_held=sum(p.slices_held for p in parts),
    )  # fmt: skip
