"""Reads for the DICOM network, always within the user's clinic."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import Http404

from apps.accounts.models import User

from .models import DicomInstance, DicomNode, OutboxItem


def node_list(*, user: User) -> QuerySet[DicomNode]:
    return DicomNode.objects.for_clinic(user.clinic_id).order_by("ae_title")


def node_get(*, user: User, node_id: int) -> DicomNode:
    """A node of the user's clinic; Http404 for any other (another clinic's looks absent)."""
    node = DicomNode.objects.for_clinic(user.clinic_id).filter(pk=node_id).first()
    if node is None:
        raise Http404("No such DICOM node.")
    return node


def node_for_calling_ae(ae_title: str) -> DicomNode | None:
    """The active node an association comes from (the receiver has no user: the AE title is
    the credential, checked against the registered nodes)."""
    return DicomNode.objects.filter(ae_title=ae_title.strip(), is_active=True).select_related("clinic").first()


def case_outbox(*, case_id: int) -> QuerySet[OutboxItem]:
    """A case's outbox rows; the caller has already fetched the case through case_get."""
    return OutboxItem.objects.filter(study__case_id=case_id).select_related("node").order_by("created_at", "id")


@dataclass(frozen=True)
class FailedInstance:
    """A received instance whose unpacking job failed: listed with the outbox rows (same
    fields), as its results will never be sent; the PACS may send it again."""

    node: DicomNode | None
    last_error: str
    created_at: datetime.datetime
    attempts: int
    id: None = None
    kind: str = "instance"
    verified: bool = False
    state: str = "failed"
    next_attempt_at: None = None
    objects_sent: int = 0
    sent_at: None = None

    def get_kind_display(self) -> str:
        return "Received instance"

    def get_state_display(self) -> str:
        return "Failed: not unpacked, not reported on"


def case_outbox_state(*, case_id: int) -> list[OutboxItem | FailedInstance]:
    """The case's received instances that failed to unpack (one line each), then its outbox
    rows; the caller has already fetched the case through case_get."""
    from apps.scans.models import StudyStatus

    failed = (
        DicomInstance.objects.filter(study__case_id=case_id, frame_number=1, upload__status=StudyStatus.FAILED)
        .select_related("study__node", "upload")
        .order_by("received_at", "id")
    )
    lines: list[OutboxItem | FailedInstance] = [
        FailedInstance(node=i.study.node, last_error=f"{i.sop_instance_uid}: {i.upload.error}",
                       created_at=i.received_at, attempts=i.upload.attempts)
        for i in failed
    ]  # fmt: skip
    return lines + list(case_outbox(case_id=case_id))
