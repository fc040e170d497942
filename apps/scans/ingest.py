"""What one upload request holds, turned into the scans to store: JPEG/PNG slices as they are,
DICOM files (single or multi-frame, named .dcm or not) and .zip archives of a study folder.

Every DICOM frame becomes one slice: the frame is decoded by `workers.dicom` (the function
that feeds `workers.imaging.prepare`), rendered to a 16-bit gray PNG (what the pages show and
the worker analyses: lossless to 1/65535 of the decoded image), and the dataset is
de-identified (apps/scans/deidentify.py) before anything is kept; the original bytes are
never written to storage. A multi-frame file is split into single-frame de-identified files.

Zip archives: nested folders are walked, DICOMDIR and hidden files are ignored, members that
are not DICOM (or DICOM we refuse, e.g. a CT localizer) are listed as skipped with the reason.
Zip bombs: the member count, each member's size and the total uncompressed size are capped
(declared sizes checked before reading, real sizes while reading), and a zip inside a zip is
refused.
"""
from __future__ import annotations

import copy
import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import cv2
import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from workers import dicom
from workers.image_content import reject_uninformative
from workers.imaging import MAX_UPLOAD_BYTES, ScanDecodeError, decode_gray_bounded, inspect_scan

from .deidentify import dicom_deidentify

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class UploadRefused(ValueError):
    """The whole request is refused; `.problems` are messages for the user."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class ImageItem:
    """A JPEG/PNG upload, checked by content."""

    name: str
    data: bytes
    format: str
    width: int
    height: int


@dataclass(frozen=True)
class DicomSlice:
    """One frame of a DICOM upload, ready to store."""

    name: str
    png: bytes  # 16-bit gray rendering of the decoded frame
    dicom: bytes  # the de-identified single-frame DICOM file
    width: int
    height: int
    series_uid: str  # de-identified Series Instance UID ("" if the file had none)
    slice_order: float
    instance_number: int | None
    source_patient_id: str  # PatientID as the file had it, for the MRN check; never stored in a file


@dataclass
class Ingested:
    items: list[ImageItem | DicomSlice] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _limits() -> dict[str, int]:
    return {
        "zip_bytes": settings.DICOM_ZIP_MAX_BYTES,
        "members": settings.DICOM_ZIP_MAX_MEMBERS,
        "uncompressed": settings.DICOM_ZIP_MAX_UNCOMPRESSED_BYTES,
        "slices": settings.DICOM_MAX_SLICES_PER_REQUEST,
    }


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def _png16(gray: np.ndarray) -> bytes:
    pixels = (np.clip(gray, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])  # fast, 4× smaller than raw
    if not ok:  # pragma: no cover - OpenCV fails only without memory
        raise ScanDecodeError("The decoded DICOM image could not be rendered.")
    return encoded.tobytes()


def _single_frame(header: Any, frames: np.ndarray, index: int, per_frame: Any) -> Any:
    """Frame `index` of a multi-frame dataset as its own single-frame dataset (native pixels).
    `header` is the dataset without its pixel data and per-frame functional groups."""
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    one = copy.deepcopy(header)
    pixels = np.ascontiguousarray(frames[index])
    one.NumberOfFrames = 1
    if per_frame is not None and len(per_frame.value) == frames.shape[0]:
        one.PerFrameFunctionalGroupsSequence = Sequence([copy.deepcopy(per_frame.value[index])])
    for keyword in ("FrameIncrementPointer", "FrameTime", "FrameTimeVector"):
        if keyword in one:
            delattr(one, keyword)
    if pixels.ndim == 3:  # colour came back as RGB, interleaved
        one.PhotometricInterpretation, one.PlanarConfiguration = "RGB", 0
    one.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    one.PixelData = pixels.tobytes()
    one["PixelData"].VR = "OW" if pixels.dtype.itemsize > 1 else "OB"
    # The frame's own instance UID: the de-identified one plus the frame number, still unique.
    if "SOPInstanceUID" in one:
        one.SOPInstanceUID = f"{one.SOPInstanceUID}.{index + 1}"[:64]
        one.file_meta.MediaStorageSOPInstanceUID = one.SOPInstanceUID
    return one


def _write(dataset: Any) -> bytes:
    from pydicom.filebase import DicomBytesIO

    out = DicomBytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom_slices(data: bytes, *, name: str, uid_key: str) -> list[DicomSlice]:
    """Check, decode, de-identify and split one DICOM file. ScanDecodeError names the reason."""
    dataset = dicom.read_dicom(data)
    if str(dataset.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        # The Basic Profile cleans attributes, not pixels: text burnt into the image would be kept.
        raise ScanDecodeError(
            "The image has identifying text burnt into its pixels (Burned In Annotation = YES) "
            "and cannot be de-identified here; export the series without annotations."
        )
    frames = dicom.stored_frames(dataset)
    grays = [dicom.frame_to_gray(dataset, frames[i], i) for i in range(frames.shape[0])]
    source_patient_id = str(dataset.get("PatientID", "") or "").strip()[:64]
    number = dicom.instance_number(dataset)
    position = dicom.slice_position(dataset)
    dicom_deidentify(dataset, key=uid_key)  # from here on, nothing identifying is left in it
    series_uid = str(dataset.get("SeriesInstanceUID", "") or "")
    count = len(grays)
    per_frame = None
    if count > 1:
        # Each frame's file is a copy of the header: copy it without the pixels of every frame
        # and the functional groups of every frame, or splitting would cost frames² memory.
        del dataset.PixelData
        per_frame = dataset.pop("PerFrameFunctionalGroupsSequence", None)
    slices = []
    for index, gray in enumerate(grays):
        if count == 1:
            stored, order = dataset, number if number is not None else position
        else:
            stored, order = _single_frame(dataset, frames, index, per_frame), index + 1
        png = _png16(gray)
        inspect_scan(png)  # the same size and content checks as a JPEG/PNG upload
        slices.append(
            DicomSlice(
                name=name if count == 1 else f"{name} [frame {index + 1}/{count}]",
                png=png,
                dicom=_write(stored),
                width=int(gray.shape[1]),
                height=int(gray.shape[0]),
                series_uid=series_uid,
                slice_order=float(order) if order is not None else 0.0,
                instance_number=number if count == 1 else index + 1,
                source_patient_id=source_patient_id,
            )
        )
    return slices


def _read_upload(upload: UploadedFile, limit: int, name: str) -> bytes:
    if upload.size is not None and upload.size > limit:
        raise UploadRefused([f"{name}: the file is {_mb(upload.size)}; the limit is {limit // 2**20} MB."])
    upload.seek(0)
    data = upload.read(limit + 1)  # never more than the limit in memory
    if len(data) > limit:
        raise UploadRefused([f"{name}: the file is larger than {limit // 2**20} MB."])
    return data


def _is_zip(upload: UploadedFile) -> bool:
    upload.seek(0)
    head = upload.read(4)
    upload.seek(0)
    return head in _ZIP_MAGIC


def _ignored_member(path: PurePosixPath) -> str | None:
    if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return "hidden or system file, ignored"
    if path.name.upper() == "DICOMDIR":
        return "DICOMDIR (the study's index), ignored"
    return None


def _zip_slices(upload: UploadedFile, name: str, uid_key: str, result: Ingested) -> None:
    limits = _limits()
    cap_mb, members_cap, unpacked_mb = limits["zip_bytes"] // 2**20, limits["members"], limits["uncompressed"] // 2**20
    if upload.size is not None and upload.size > limits["zip_bytes"]:
        raise UploadRefused([f"{name}: the archive is {_mb(upload.size)}; the limit is {cap_mb} MB."])
    upload.seek(0)
    try:
        archive = zipfile.ZipFile(upload)
        members = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadRefused([f"{name}: the zip archive cannot be read ({exc})."]) from exc
    if len(members) > limits["members"]:
        raise UploadRefused([f"{name}: the archive has {len(members)} files; at most {members_cap} are accepted."])
    declared = sum(info.file_size for info in members)
    if declared > limits["uncompressed"]:
        raise UploadRefused(
            [f"{name}: the archive unpacks to {_mb(declared)}; at most {unpacked_mb} MB are accepted."]
        )
    found = 0
    unpacked = 0
    for info in members:
        path = PurePosixPath(info.filename)
        label = f"{name}/{info.filename}"
        reason = _ignored_member(path)
        if reason:
            result.skipped.append(Skipped(label, reason))
            continue
        if info.flag_bits & 0x1:
            raise UploadRefused([f"{label}: encrypted archive members are not accepted."])
        if info.file_size > MAX_UPLOAD_BYTES:
            limit_mb = MAX_UPLOAD_BYTES // 2**20
            raise UploadRefused([f"{label}: {_mb(info.file_size)}; the limit per file is {limit_mb} MB."])
        try:
            with archive.open(info) as handle:
                data = handle.read(MAX_UPLOAD_BYTES + 1)
        except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError) as exc:
            raise UploadRefused([f"{label}: cannot be unpacked ({exc})."]) from exc
        unpacked += len(data)
        if len(data) > info.file_size or unpacked > limits["uncompressed"]:
            raise UploadRefused([f"{name}: the archive's sizes are wrong (a zip bomb?); nothing was stored."])
        if data[:4] in _ZIP_MAGIC or path.suffix.lower() == ".zip":
            raise UploadRefused([f"{label}: a zip inside a zip is not accepted; upload the inner archive itself."])
        if not dicom.looks_like_dicom(data):
            result.skipped.append(Skipped(label, "not a DICOM file"))
            continue
        try:
            slices = dicom_slices(data, name=label, uid_key=uid_key)
        except ScanDecodeError as exc:
            result.skipped.append(Skipped(label, exc.args[0]))
            continue
        found += len(slices)
        result.items.extend(slices)
    if not found:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in result.skipped[-5:]) or "it is empty"
        raise UploadRefused([f"{name}: the archive holds no MR DICOM image ({reasons})."])


def _image_item(data: bytes, name: str, *, named_dicom: bool = False) -> ImageItem:
    """A JPEG/PNG, by content whatever its name; a `.dcm` that is neither gets DICOM's message."""
    try:
        info = inspect_scan(data)
    except ScanDecodeError:
        if named_dicom:
            dicom.read_dicom(data)  # raises with the reason: not DICOM, or claims to be and is not
        raise
    # Blank, one-colour and pure-noise images never reach the queue (workers/image_content.py).
    # DICOM slices are left to the model's gate: a series may hold a nearly empty end slice.
    # On the bounded copy (at most WORK_SIDE a side, decoded a band at a time), so the web
    # process's memory stays bounded for the largest accepted file (the check looks at a 256 px
    # area-averaged copy anyway).
    reject_uninformative(decode_gray_bounded(data))
    return ImageItem(name=name, data=data, format=info.format, width=info.width, height=info.height)


def ingest_uploads(uploads: Sequence[UploadedFile], *, uid_key: str) -> Ingested:
    """Everything in one request, checked: every problem is collected and UploadRefused lists
    them all (nothing is stored then); skipped zip members are not problems."""
    result = Ingested()
    problems: list[str] = []
    for upload in uploads:
        name = (upload.name or "upload")[-255:]
        try:
            if _is_zip(upload):
                _zip_slices(upload, name, uid_key, result)
                continue
            data = _read_upload(upload, MAX_UPLOAD_BYTES, name)
            if dicom.looks_like_dicom(data):
                result.items.extend(dicom_slices(data, name=name, uid_key=uid_key))
            else:
                result.items.append(_image_item(data, name, named_dicom=name.lower().endswith((".dcm", ".dicom"))))
        except UploadRefused as exc:
            problems.extend(exc.problems)
        except ScanDecodeError as exc:
            problems.append(f"{name}: {exc.args[0]}")
    slices = sum(isinstance(item, DicomSlice) for item in result.items)
    if slices > _limits()["slices"]:
        problems.append(f"The upload holds {slices} slices; at most {_limits()['slices']} are accepted at once.")
    if problems:
        raise UploadRefused(problems)
    result.items = _ordered(result.items)
    return result


def _ordered(items: list[ImageItem | DicomSlice]) -> list[ImageItem | DicomSlice]:
    """JPEG/PNG in upload order; DICOM slices grouped by series (first seen first) and ordered
    within it by Instance Number, else Image Position along the slice normal."""
    series_rank: dict[str, int] = {}
    keyed = []
    for position, item in enumerate(items):
        if isinstance(item, DicomSlice):
            rank = series_rank.setdefault(item.series_uid, len(series_rank))
            keyed.append(((1, rank, item.slice_order, position), item))
        else:
            keyed.append(((0, 0, 0.0, position), item))
    return [item for _key, item in sorted(keyed, key=lambda pair: pair[0])]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
