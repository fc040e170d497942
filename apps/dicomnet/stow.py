"""DICOMweb STOW-RS (PS3.18 10.5): the multipart/related body split into its DICOM parts, and
the standard response (Store Instances Response Module: ReferencedSOPSequence,
FailedSOPSequence with a Failure Reason per part). Each part goes through the same intake as
a C-STORE (`intake.instance_receive`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .intake import Received

# PS3.18 Table 10.5.3-1 / PS3.4 B.2.3 failure reasons
FAILURE_CANNOT_UNDERSTAND = 0xC000
FAILURE_SOP_CLASS_NOT_SUPPORTED = 0x0122


class StowRequestError(ValueError):
    """The body cannot be read as multipart/related DICOM: `.args[0]` says why."""


@dataclass(frozen=True)
class Part:
    content_type: str
    data: bytes


def _parameter(content_type: str, name: str) -> str:
    match = re.search(rf'(?:^|;)\s*{name}\s*=\s*("([^"]*)"|[^;\s]*)', content_type, re.I)
    if not match:
        return ""
    return match.group(2) if match.group(2) is not None else match.group(1)


def check_content_type(content_type: str) -> str:
    """The boundary of a `multipart/related; type="application/dicom"` body, else StowRequestError."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "multipart/related":
        raise StowRequestError(f'STOW-RS takes multipart/related; type="application/dicom", not {media or "nothing"}.')
    part_type = _parameter(content_type, "type").lower()
    if part_type and part_type != "application/dicom":
        raise StowRequestError(f"Only application/dicom parts are accepted (type={part_type}).")
    boundary = _parameter(content_type, "boundary")
    if not boundary:
        raise StowRequestError("The Content-Type has no boundary.")
    return boundary


def split_parts(body: bytes, boundary: str) -> list[Part]:
    """The parts of a multipart body (RFC 2046), binary-safe: bytes are never re-encoded."""
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise StowRequestError("The body holds no multipart part with the declared boundary.")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):  # the close delimiter
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise StowRequestError("A part has no header/body separator.")
        data = data[:-2] if data.endswith(b"\r\n") else data
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        parts.append(Part(headers.get("content-type", "application/dicom").lower(), data))
    if not parts:
        raise StowRequestError("The body holds no parts.")
    return parts


def _ui(value: str) -> dict:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def response_body(results: list[Received], retrieve_url: str) -> dict:
    """The Store Instances Response as DICOM JSON (PS3.18 F.2)."""
    body: dict = {"00081190": {"vr": "UR", "Value": [retrieve_url]}}
    referenced = [
        {"00081150": _ui(r.sop_class_uid), "00081155": _ui(r.sop_instance_uid)} for r in results if r.ok
    ]
    failed = [
        {
            "00081150": _ui(r.sop_class_uid),
            "00081155": _ui(r.sop_instance_uid),
            "00081197": {"vr": "US", "Value": [FAILURE_CANNOT_UNDERSTAND]},
            # Error Comment: the reason in words (the Failure Reason code alone says little).
            "00000902": {"vr": "LO", "Value": [r.reason[:64]]},
        }
        for r in results
        if not r.ok
    ]
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    return body


def response_status(results: list[Received]) -> int:
    """200 all stored, 202 some failed, 409 none stored (PS3.18 10.5.3)."""
    stored = sum(r.ok for r in results)
    if stored == len(results):
        return 200
    return 202 if stored else 409
