"""Writes for DICOM nodes: register, change, deactivate (clinic admins only; audited)."""

from __future__ import annotations

import secrets

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from apps.accounts.clinics import require_same_clinic
from apps.accounts.models import Role, User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record

from .models import DicomNode

NODE_FIELDS = ("ae_title", "host", "port", "send_results", "is_active")


def _require_admin(user: User) -> None:
    if user.clinic_id is None or user.role != Role.CLINIC_ADMIN:
        raise PermissionDenied("Only a clinic admin can manage DICOM nodes.")


def _ae_taken(ae_title: str, exclude_pk: int | None = None) -> ValidationError | None:
    # Unique across clinics: the AE title is how the receiver knows whose study it is. The
    # message does not say which clinic holds it.
    taken = DicomNode.objects.filter(ae_title=ae_title)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    return ValidationError({"ae_title": f"The AE title {ae_title} is already registered."}) if taken.exists() else None


def _service_user(clinic_id: int, ae_title: str) -> User:
    """The inactive, password-less account the receiver acts as for this node."""
    user = User(
        username=f"dicom-node-{secrets.token_hex(6)}",
        clinic_id=clinic_id,
        role=Role.CLINIC_STAFF,
        is_active=False,
        first_name="DICOM node",
        last_name=ae_title,
    )
    user.set_unusable_password()
    user.save()
    return user


def _save(node: DicomNode, *, exclude: list[str]) -> None:
    node.full_clean(exclude=exclude, validate_unique=False)
    problem = _ae_taken(node.ae_title, node.pk)
    if problem:
        raise problem
    try:
        with transaction.atomic():
            node.save()
    except IntegrityError:
        problem = _ae_taken(node.ae_title, node.pk)
        if problem:
            raise problem from None
        raise


@transaction.atomic
def node_create(
    *, created_by: User, ae_title: str, host: str, port: int, send_results: bool = False, is_active: bool = True
) -> DicomNode:
    _require_admin(created_by)
    ae_title = ae_title.strip()
    node = DicomNode(
        clinic_id=created_by.clinic_id,
        ae_title=ae_title,
        host=host.strip(),
        port=port,
        send_results=send_results,
        is_active=is_active,
        created_by=created_by,
    )
    node.full_clean(exclude=["clinic", "service_user", "created_by"], validate_unique=False)
    if problem := _ae_taken(ae_title):
        raise problem
    node.service_user = _service_user(created_by.clinic_id, ae_title)
    _save(node, exclude=["clinic", "service_user", "created_by"])
    audit_record(actor=created_by, action=AuditAction.ADMIN_CHANGE, obj=node, object_type="dicom_node",
                 detail=f"registered DICOM node {ae_title}")  # fmt: skip
    return node


@transaction.atomic
def node_update(*, node: DicomNode, changed_by: User, **changes: object) -> DicomNode:
    _require_admin(changed_by)
    require_same_clinic(changed_by, node, what="node")
    unknown = set(changes) - set(NODE_FIELDS)
    if unknown:
        raise ValueError(f"not node fields: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(node, name, value.strip() if isinstance(value, str) else value)
    _save(node, exclude=["clinic", "service_user", "created_by"])
    detail = "deactivated" if changes.get("is_active") is False else "changed " + ", ".join(sorted(changes))
    audit_record(actor=changed_by, action=AuditAction.ADMIN_CHANGE, obj=node, object_type="dicom_node",
                 detail=f"DICOM node {node.ae_title}: {detail}")  # fmt: skip
    return node


def node_deactivate(*, node: DicomNode, changed_by: User) -> DicomNode:
    """Refuse its associations from now on; its studies, cases and outbox stay."""
    return node_update(node=node, changed_by=changed_by, is_active=False)


def stow_store(*, parts: list, user: User) -> list:
    """Each STOW-RS part through the network intake, in the user's clinic; a part that is not
    application/dicom is refused with the reason."""
    from .intake import Received, instance_receive

    results = []
    for part in parts:
        if part.content_type.split(";", 1)[0].strip() != "application/dicom":
            results.append(Received(ok=False, reason=f"A {part.content_type} part is not a DICOM instance."))
            continue
        received = instance_receive(data=part.data, node=None, actor=user, source="STOW-RS")
        if not received.ok:
            audit_record(actor=user, action=AuditAction.UPLOAD, outcome="failure", object_type="dicom_instance",
                         detail=received.reason[:255])  # fmt: skip
        results.append(received)
    return results
