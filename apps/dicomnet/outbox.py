"""The outbox: results sent back to the PACS, never lost, never duplicated.

- `outbox_plan` (the sweep, every DICOM_OUTBOX_SWEEP_SECONDS) adds rows: SR + secondary
  captures once the study is stable (no instance received for DICOM_STUDY_STABLE_SECONDS),
  every received instance of it is unpacked (or failed) and every scan of it finished (a held
  one is not), a verified SR + the PDF once its case is signed. Only instances linked to their
  scan are reported on (a failed one is listed as failed with the outbox, selectors.py). One
  row per (study, kind, verified) (a unique constraint), with its UIDs fixed at creation.
- `outbox_send(item_id)` claims a due row (a conditional UPDATE: one sender at a time), builds
  the objects from the database, sends them by C-STORE to the node and marks it sent; on any
  failure the row goes to `retrying` with an exponential back-off (DICOM_OUTBOX_RETRY_SECONDS
  doubling up to DICOM_OUTBOX_MAX_RETRY_SECONDS), and is tried again, for ever. A crash
  between sending and marking sends the same SOP Instance UIDs again: the PACS replaces them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import highdicom as hd
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.scans.models import Scan, ScanStatus, StudyStatus

from .models import DicomInstance, DicomStudy, OutboxItem, OutboxKind, OutboxState
from .results import by_series, encapsulated_pdf, secondary_captures, structured_report, study_slices

logger = logging.getLogger(__name__)

STALE_CLAIM = timedelta(minutes=10)  # a sender that held a row this long is gone


class SendError(RuntimeError):
    """The PACS did not take the objects (unreachable, rejected, a failure status)."""


def _uid_root() -> str:
    return str(hd.UID())[:58]


def _add(study: DicomStudy, kind: str, verified: bool) -> OutboxItem | None:
    try:
        with transaction.atomic():
            return OutboxItem.objects.create(
                study=study, node=study.node, kind=kind, verified=verified,
                series_instance_uid=str(hd.UID()), sop_instance_uid_root=_uid_root(),
            )  # fmt: skip
    except IntegrityError:  # another sweep made it first
        return None


def outbox_plan() -> list[int]:
    """Add the rows that are due; returns their ids."""
    # A held scan (burnt-in text) waits for a person: the study is not finished until it is decided.
    unfinished = Scan.objects.filter(case_id=OuterRef("case_id"), status__in=ScanStatus.PENDING)
    analysed = Scan.objects.filter(case_id=OuterRef("case_id"), status__in=ScanStatus.ANSWERED)
    unpacking = DicomInstance.objects.filter(
        study_id=OuterRef("pk"), upload__status__in=StudyStatus.IN_FLIGHT
    )
    # A scanner sends series by series: between two series nothing is queued, yet the study is
    # not complete. Like Orthanc's StableAge, a study is reported on only once no instance has
    # arrived for DICOM_STUDY_STABLE_SECONDS (its rows are made once and never re-planned).
    quiet_since = timezone.now() - timedelta(seconds=settings.DICOM_STUDY_STABLE_SECONDS)
    arriving = DicomInstance.objects.filter(study_id=OuterRef("pk"), received_at__gt=quiet_since)
    studies = (
        DicomStudy.objects.filter(node__send_results=True, node__is_active=True, case__deleted_at__isnull=True)
        .filter(~Exists(unfinished), ~Exists(unpacking), ~Exists(arriving), Exists(analysed))
        .exclude(Q(outbox__kind=OutboxKind.SR, outbox__verified=True))
        .select_related("case", "node")
    )
    added = []
    for study in studies:
        wanted = [(OutboxKind.SR, False), (OutboxKind.SC, False)]
        if study.case.is_signed:
            wanted += [(OutboxKind.SR, True), (OutboxKind.PDF, True)]
        have = set(study.outbox.values_list("kind", "verified"))
        for kind, verified in wanted:
            if (kind, verified) not in have and (item := _add(study, kind, verified)):
                added.append(item.pk)
    return added


def outbox_due() -> list[int]:
    now = timezone.now()
    return list(
        OutboxItem.objects.filter(
            Q(state__in=(OutboxState.PENDING, OutboxState.RETRYING), next_attempt_at__lte=now)
            | Q(state=OutboxState.SENDING, claimed_at__lt=now - STALE_CLAIM)
        ).values_list("pk", flat=True)
    )


def _claim(item_id: int) -> OutboxItem | None:
    now = timezone.now()
    claimed = OutboxItem.objects.filter(
        Q(state__in=(OutboxState.PENDING, OutboxState.RETRYING), next_attempt_at__lte=now)
        | Q(state=OutboxState.SENDING, claimed_at__lt=now - STALE_CLAIM),
        pk=item_id,
    ).update(state=OutboxState.SENDING, claimed_at=now)
    return OutboxItem.objects.select_related("study__case__clinic", "node").get(pk=item_id) if claimed else None


def build_objects(item: OutboxItem) -> list[Dataset]:
    study = item.study
    slices = study_slices(study)
    if not slices and item.kind != OutboxKind.PDF:
        raise SendError("The study has no analysed slice to report.")
    if item.kind == OutboxKind.SR:
        # One SR per analysed series, all in one SR series of their own.
        return [
            structured_report(study, group, series_uid=item.series_instance_uid, instance_number=n,
                              sop_uid=f"{item.sop_instance_uid_root}.{n}", verified=item.verified)
            for n, group in enumerate(by_series(slices), start=1)
        ]  # fmt: skip
    if item.kind == OutboxKind.SC:
        return secondary_captures(slices, series_uid=item.series_instance_uid, uid_root=item.sop_instance_uid_root)
    from apps.cases.reports import case_report_export

    report = case_report_export(user=item.node.service_user, case_id=study.case_id)  # audited there
    return [encapsulated_pdf(study, report.pdf, series_uid=item.series_instance_uid,
                             sop_uid=f"{item.sop_instance_uid_root}.1")]  # fmt: skip


def c_store(*, host: str, port: int, called_ae: str, datasets: list[Dataset]) -> None:
    """C-STORE every dataset on one association; SendError unless each gets success (or a warning)."""
    ae = AE(ae_title=settings.DICOM_AE_TITLE)
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = settings.DICOM_NETWORK_TIMEOUT
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise SendError(f"No association with {called_ae} at {host}:{port} (unreachable or refused).")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code != 0 and not (0xB000 <= code <= 0xBFFF):
                comment = str(getattr(status, "ErrorComment", "") or "") if status else "no answer"
                answer = f"0x{code & 0xFFFF:04X} {comment}"
                raise SendError(f"{called_ae} answered C-STORE of {ds.SOPInstanceUID} with {answer}")
    finally:
        if assoc.is_established:
            assoc.release()


def _backoff(attempts: int) -> timedelta:
    seconds = settings.DICOM_OUTBOX_RETRY_SECONDS * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(seconds, settings.DICOM_OUTBOX_MAX_RETRY_SECONDS))


def outbox_send(item_id: int) -> OutboxItem | None:
    """Send one due row; None when it is not due or another sender holds it."""
    item = _claim(item_id)
    if item is None:
        return None
    node = item.node
    try:
        datasets = build_objects(item)
        c_store(host=node.host, port=node.port, called_ae=node.ae_title, datasets=datasets)
    except Exception as exc:  # anything: the row must stay retryable, never lost
        attempts = item.attempts + 1
        delay = _backoff(attempts)
        OutboxItem.objects.filter(pk=item.pk, state=OutboxState.SENDING).update(
            state=OutboxState.RETRYING, attempts=attempts, next_attempt_at=timezone.now() + delay,
            last_error=str(exc)[:2000] or type(exc).__name__, claimed_at=None,
        )  # fmt: skip
        logger.warning("outbox %s (%s for case %s): attempt %d failed, next in %ds: %s",
                       item.pk, item.kind, item.study.case_id, attempts, delay.total_seconds(), exc)  # fmt: skip
        item.refresh_from_db()
        return item
    OutboxItem.objects.filter(pk=item.pk).update(
        state=OutboxState.SENT, attempts=item.attempts + 1, sent_at=timezone.now(), objects_sent=len(datasets),
        last_error="", claimed_at=None,
    )  # fmt: skip
    audit_record(actor=node.service_user, action=AuditAction.EXPORT, obj=item.study.case,
                 detail=f"DICOM {item.get_kind_display()} ({len(datasets)}) sent to {node.ae_title}")  # fmt: skip
    logger.info("outbox %s: %d %s object(s) sent to %s", item.pk, len(datasets), item.kind, node.ae_title)
    item.refresh_from_db()
    return item
