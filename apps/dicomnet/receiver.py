"""The C-STORE SCP (pynetdicom): a process of its own (`manage.py dicom_receiver`).

Only registered, active nodes may associate, from their registered host (the calling AE
title and the peer address are checked when the association is requested; anyone else is
rejected). Each instance goes through `intake.instance_receive` on arrival, so an
association that stops mid-study keeps what arrived (analysed as usual) and the rest can
simply be sent again.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import socket
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from pydicom.filewriter import write_file_meta_info
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from apps.audit.models import AuditAction, AuditOutcome
from apps.audit.services import audit_record

from .intake import instance_receive
from .selectors import node_for_calling_ae

logger = logging.getLogger(__name__)

# PS3.4 Annex B.2.3 statuses
STATUS_SUCCESS = 0x0000
STATUS_CANNOT_UNDERSTAND = 0xC000  # failure: dataset does not match SOP class / cannot process
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_ERROR_COMMENT = 0x0000_0902  # (0000,0902) Error Comment, 64 chars at most


def _calling_ae(event: Any) -> str:
    # At EVT_REQUESTED only the A-ASSOCIATE-RQ primitive holds it.
    primitive = event.assoc.requestor.primitive
    title = primitive.calling_ae_title if primitive is not None else event.assoc.requestor.ae_title
    return str(title).strip()


def _encoded(event: Any) -> bytes:
    """The instance as a Part 10 file, bytes as received (no decode/re-encode)."""
    out = io.BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, event.file_meta, enforce_standard=True)
    out.write(event.request.DataSet.getvalue())
    return out.getvalue()


def handle_store(event: Any) -> Any:
    close_old_connections()  # a long-lived process: never reuse a connection the server dropped
    node = node_for_calling_ae(_calling_ae(event))
    if node is None:  # deactivated while associated
        return _failure("The calling AE title is not a registered DICOM node.")
    try:
        data = _encoded(event)
    except Exception as exc:
        return _failure(f"Unreadable instance ({type(exc).__name__}).")
    received = instance_receive(data=data, node=node, actor=node.service_user, source=f"C-STORE from {node.ae_title}")
    if received.ok:
        return STATUS_SUCCESS
    logger.warning("C-STORE from %s refused: %s", node.ae_title, received.reason)
    audit_record(actor=node.service_user, action=AuditAction.UPLOAD, outcome=AuditOutcome.FAILURE,
                 object_type="dicom_instance", detail=received.reason[:255])  # fmt: skip
    return _failure(received.reason)


def _failure(reason: str) -> Any:
    from pydicom.dataset import Dataset

    status = Dataset()
    status.Status = STATUS_CANNOT_UNDERSTAND
    status.ErrorComment = reason[:64]  # the PS3.7 limit; the whole reason is in the audit/log
    return status


def _normalised(address: str) -> str:
    """An IP address in one spelling (an IPv4-mapped IPv6 peer as its IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def host_addresses(host: str) -> set[str]:
    """The IP addresses a node's host stands for: itself when it is one, else what its name
    resolves to now (empty when it does not resolve)."""
    try:
        return {_normalised(str(ipaddress.ip_address(host)))}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return {_normalised(str(info[4][0])) for info in infos}


def _reject(event: Any, *, calling: str, why: str, clinic_id: int | None = None, node_id: int | str = "") -> None:
    address = event.assoc.requestor.address
    logger.warning("association from AE title %r (%s) rejected: %s", calling, address, why)
    audit_record(actor=None, action=AuditAction.LOGIN_FAILED, outcome=AuditOutcome.FAILURE,
                 object_type="dicom_node", object_id=node_id, actor_username=calling[:150], clinic_id=clinic_id,
                 detail=f"DICOM association from {address} rejected: {why}"[:255])  # fmt: skip
    # Rejected permanent, by the service user, reason: calling AE title not recognised.
    event.assoc.acse.send_reject(0x01, 0x01, 0x03)
    event.assoc.kill()  # waits for the reject PDU to go out before the socket is closed


def _check_requestor(event: Any) -> None:
    """Reject an association unless its calling AE title is an active registered node AND it
    comes from that node's host (an AE title alone is no secret: anyone can send it). The host
    is resolved once, here, per association; the peer must be one of its addresses."""
    calling = _calling_ae(event)
    close_old_connections()
    node = node_for_calling_ae(calling)
    if node is None:
        _reject(event, calling=calling, why="unknown AE title")
        return
    peer = _normalised(str(event.assoc.requestor.address))
    if peer not in host_addresses(node.host):
        _reject(event, calling=calling, why=f"not from the node's host {node.host}", clinic_id=node.clinic_id,
                node_id=node.pk)  # fmt: skip


def build_ae(ae_title: str | None = None) -> AE:
    ae = AE(ae_title=ae_title or settings.DICOM_AE_TITLE)
    # Every storage SOP class in every transfer syntax: compressed MR (JPEG family, JPEG 2000,
    # RLE) is decoded by the intake, so the PACS need not transcode.
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.network_timeout = settings.DICOM_NETWORK_TIMEOUT
    ae.require_called_aet = True
    return ae


HANDLERS = [(evt.EVT_C_STORE, handle_store), (evt.EVT_REQUESTED, _check_requestor)]


def serve(*, address: str | None = None, port: int | None = None, block: bool = True, ae_title: str | None = None):
    """Start the SCP. `block=False` returns the server (tests; `.shutdown()` stops it)."""
    ae = build_ae(ae_title)
    bind = (address or settings.DICOM_BIND_ADDRESS, settings.DICOM_PORT if port is None else port)
    logger.info("DICOM receiver %s listening on %s:%s", ae.ae_title, *bind)
    return ae.start_server(bind, block=block, evt_handlers=HANDLERS)
