"""Reads for the DICOM network, always within the user's clinic."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from apps.accounts.models import User

from .models import DicomNode, OutboxItem


def node_list(*, user: User) -> QuerySet[DicomNode]:
    return DicomNode.objects.filter(clinic_id=user.clinic_id).order_by("ae_title")


def node_get(*, user: User, node_id: int) -> DicomNode:
    """A node of the user's clinic; Http404 for any other (another clinic's looks absent)."""
    node = DicomNode.objects.filter(clinic_id=user.clinic_id, pk=node_id).first()
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
