"""What one upload request holds, in two halves: the CHECK the web request runs (headers only,
never a pixel decoded) and the UNPACK a worker job runs (decode, de-identify, split).

JPEG/PNG slices are checked by content in the request and stored as they are.

DICOM files (single or multi-frame, named .dcm or not) and .zip archives of a study folder
are a study, a unit of work (issue 15/19): `check_uploads` parses each file's or zip member's
DICOM header (the pixel data's bytes are read, never decompressed) and budgets the WHOLE
request from the headers before anything is stored: frames × rows × columns × samples ×
bytes per sample per file (DICOM_MAX_DECODED_BYTES_PER_FILE) and for the request
(DICOM_MAX_DECODED_BYTES_PER_REQUEST), the slice count (DICOM_MAX_SLICES_PER_REQUEST), the
zip's member count and declared and real uncompressed sizes. A DICOM decompression bomb (an
11 KB JPEG-LS file of 16 frames at 4096²) is refused from its header, before a pixel is decoded.
The request then stores the original bytes as they came (services.scans_upload).

`unpack_source` (the worker, workers/tasks.py `ingest_study`) re-checks the same budget, then
decodes every frame with `mri.intake.dicom` (the function that feeds `mri.model.preprocessing.prepare`),
renders it to a 16-bit gray PNG (what the pages show and the model analyses: lossless to
1/65535 of the decoded image), and rebuilds a de-identified dataset from an allow-list
(mri/intake/dicom/deidentify.py) with a zeroed preamble; a multi-frame file is split into
single-frame de-identified files. The originals are deleted once unpacked.

Zip archives: nested folders are walked, DICOMDIR and hidden files are ignored, members that
are not DICOM (or DICOM we refuse, e.g. a CT localizer) are listed as skipped with the reason.
Zip bombs: the member count, each member's size and the total uncompressed size are capped
(declared sizes checked before reading, real sizes while reading), and a zip inside a zip is
refused.
"""
from __future__ import annotations

import datetime
import hashlib
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from mri.intake import dicom
from mri.intake.decode import decode_gray_bounded, inspect_header, inspect_scan
from mri.intake.dicom import deidentify
from mri.intake.dicom.frames import decoded_size, png16, single_frame
from mri.intake.image_content import reject_uninformative
from mri.intake.limits import MAX_UPLOAD_BYTES, ScanDecodeError

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


# The code of a refusal for the request as a whole (its slice count or decoded size, summed
# over its files): splitting the request into files must never get round it (apps/scans/batch.py).
REQUEST_BUDGET = "request_budget"


class UploadRefused(ValueError):
    """The whole request is refused; `.problems` are messages for the user. `code` is
    REQUEST_BUDGET when a request-wide limit refused it (not one file's problem)."""

    def __init__(self, problems: list[str], *, code: str = "invalid") -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.code = code


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
class DicomSource:
    """A DICOM file or a zipped study, checked from its headers, stored as it came."""

    name: str
    upload: UploadedFile
    kind: str  # "dicom" | "zip"
    slices: int  # frames its headers declare (the accepted members', for a zip)
    decoded_bytes: int  # what decoding them all would take


@dataclass(frozen=True)
class DicomSlice:
    """One frame of a DICOM upload, ready to store (made by the worker)."""

    name: str
    png: bytes  # 16-bit gray rendering of the decoded frame
    dicom: bytes  # the de-identified single-frame DICOM file
    width: int
    height: int
    series_uid: str  # de-identified Series Instance UID ("" if the file had none)
    slice_order: float
    instance_number: int | None
    source_patient_id: str  # PatientID as the file had it, for the MRN check; never stored in a file
    exam_date: datetime.date | None = None  # StudyDate, else SeriesDate (kept: deidentify.py)
    series_description: str = ""  # kept only when it does not name the patient


@dataclass
class Checked:
    """What the web request accepted: images to store now, DICOM sources for the worker."""

    images: list[ImageItem] = field(default_factory=list)
    sources: list[DicomSource] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def slices(self) -> int:
        return sum(source.slices for source in self.sources)


def _limits() -> dict[str, int]:
    return {
        "zip_bytes": settings.DICOM_ZIP_MAX_BYTES,
        "members": settings.DICOM_ZIP_MAX_MEMBERS,
        "uncompressed": settings.DICOM_ZIP_MAX_UNCOMPRESSED_BYTES,
        "slices": settings.DICOM_MAX_SLICES_PER_REQUEST,
        "decoded_file": settings.DICOM_MAX_DECODED_BYTES_PER_FILE,
        "decoded_request": settings.DICOM_MAX_DECODED_BYTES_PER_REQUEST,
    }


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def _budget_file(dataset: Any, name: str) -> int:
    """The file's decoded size, refused (the whole request) over the per-file budget."""
    size = decoded_size(dataset)
    limit = _limits()["decoded_file"]
    if size > limit:
        frames = dicom.frame_count(dataset)
        raise UploadRefused([
            f"{name}: {frames} frame(s) of {dataset.get('Columns')}×{dataset.get('Rows')} pixels would decode to "
            f"{_mb(size)}; at most {_mb(limit)} per file are accepted (nothing was decoded or stored)."
        ])  # fmt: skip
    return size


def _checked_header(data: bytes, name: str) -> Any:
    """The parsed, checked dataset of one DICOM file, pixels NOT decoded: ScanDecodeError for
    what we refuse (not MR, no pixels, burnt-in text...), UploadRefused over the budget."""
    dataset = dicom.read_dicom(data)
    if str(dataset.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        # De-identification cleans attributes, not pixels: text burnt into the image would be kept.
        raise ScanDecodeError(
            "The image has identifying text burnt into its pixels (Burned In Annotation = YES) "
            "and cannot be de-identified here; export the series without annotations."
        )
    _budget_file(dataset, name)
    return dataset


def dicom_slices(data: bytes, *, name: str, uid_key: str) -> list[DicomSlice]:
    """Check, decode, de-identify and split one DICOM file (the worker's half).
    ScanDecodeError names the reason."""
    source = _checked_header(data, name)
    frames = dicom.stored_frames(source)
    grays = [dicom.frame_to_gray(source, frames[i], i) for i in range(frames.shape[0])]
    source_patient_id = str(source.get("PatientID", "") or "").strip()[:64]
    number = dicom.instance_number(source)
    position = dicom.slice_position(source)
    dataset = deidentify.dicom_deidentify(source, key=uid_key)  # a new dataset: nothing identifying in it
    del source
    series_uid = str(dataset.get("SeriesInstanceUID", "") or "")
    exam_date = deidentify.exam_date(dataset)
    description = str(dataset.get("SeriesDescription", "") or "")[:64]
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
            stored, order = single_frame(dataset, frames, index, per_frame), index + 1
        png = png16(gray)
        inspect_header(png)  # the same size limits as a JPEG/PNG upload (its structure is OpenCV's)
        slices.append(
            DicomSlice(
                name=name if count == 1 else f"{name} [frame {index + 1}/{count}]",
                png=png,
                dicom=deidentify.write(stored),
                width=int(gray.shape[1]),
                height=int(gray.shape[0]),
                series_uid=series_uid,
                slice_order=float(order) if order is not None else 0.0,
                instance_number=number if count == 1 else index + 1,
                source_patient_id=source_patient_id,
                exam_date=exam_date,
                series_description=description,
            )
        )
    return slices


def _read_upload(upload: IO[bytes], limit: int, name: str) -> bytes:
    size = getattr(upload, "size", None)
    if size is not None and size > limit:
        raise UploadRefused([f"{name}: the file is {_mb(size)}; the limit is {limit // 2**20} MB."])
    upload.seek(0)
    data = upload.read(limit + 1)  # never more than the limit in memory
    if len(data) > limit:
        raise UploadRefused([f"{name}: the file is larger than {limit // 2**20} MB."])
    return data


def _is_zip(upload: IO[bytes]) -> bool:
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


def _zip_members(upload: IO[bytes], name: str, skipped: list[Skipped]) -> Iterator[tuple[str, bytes]]:
    """(label, bytes) of each member that looks like DICOM, under every zip-bomb check; the
    others are added to `skipped`. Raises UploadRefused for the archive as a whole."""
    limits = _limits()
    cap_mb, members_cap, unpacked_mb = limits["zip_bytes"] // 2**20, limits["members"], limits["uncompressed"] // 2**20
    size = getattr(upload, "size", None)
    if size is not None and size > limits["zip_bytes"]:
        raise UploadRefused([f"{name}: the archive is {_mb(size)}; the limit is {cap_mb} MB."])
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
    unpacked = 0
    for info in members:
        path = PurePosixPath(info.filename)
        label = f"{name}/{info.filename}"
        reason = _ignored_member(path)
        if reason:
            skipped.append(Skipped(label, reason))
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
            skipped.append(Skipped(label, "not a DICOM file"))
            continue
        yield label, data


def _no_image(name: str, skipped: list[Skipped]) -> UploadRefused:
    reasons = "; ".join(f"{s.name}: {s.reason}" for s in skipped[-5:]) or "it is empty"
    return UploadRefused([f"{name}: the archive holds no MR DICOM image ({reasons})."])


def _check_zip(upload: UploadedFile, name: str, checked: Checked) -> None:
    """Headers of every member; the zip is kept whole, as it came, for the worker."""
    frames = decoded = 0
    for label, data in _zip_members(upload, name, checked.skipped):
        try:
            dataset = _checked_header(data, label)
        except ScanDecodeError as exc:
            checked.skipped.append(Skipped(label, exc.args[0]))
            continue
        frames += dicom.frame_count(dataset)
        decoded += decoded_size(dataset)
    if not frames:
        raise _no_image(name, checked.skipped)
    checked.sources.append(DicomSource(name=name, upload=upload, kind="zip", slices=frames, decoded_bytes=decoded))


def _image_item(data: bytes, name: str, *, named_dicom: bool = False) -> ImageItem:
    """A JPEG/PNG, by content whatever its name; a `.dcm` that is neither gets DICOM's message."""
    try:
        info = inspect_scan(data)
    except ScanDecodeError:
        if named_dicom:
            dicom.read_dicom(data)  # raises with the reason: not DICOM, or claims to be and is not
        raise
    # Blank, one-colour and pure-noise images never reach the queue (mri/intake/image_content.py).
    # DICOM slices are left to the model's gate: a series may hold a nearly empty end slice.
    # On the bounded copy (at most WORK_SIDE a side, decoded a band at a time), so the web
    # process's memory stays bounded for the largest accepted file (the check looks at a 256 px
    # area-averaged copy anyway).
    reject_uninformative(decode_gray_bounded(data))
    return ImageItem(name=name, data=data, format=info.format, width=info.width, height=info.height)


def check_uploads(uploads: Sequence[UploadedFile]) -> Checked:
    """The web request's half: everything checked, no DICOM pixel decoded. Every problem is
    collected and UploadRefused lists them all (nothing is stored then); skipped zip members are
    not problems."""
    checked = Checked()
    problems: list[str] = []
    for upload in uploads:
        name = (upload.name or "upload")[-255:]
        try:
            if _is_zip(upload):
                _check_zip(upload, name, checked)
                continue
            data = _read_upload(upload, MAX_UPLOAD_BYTES, name)
            if dicom.looks_like_dicom(data):
                dataset = _checked_header(data, name)
                checked.sources.append(DicomSource(
                    name=name, upload=upload, kind="dicom", slices=dicom.frame_count(dataset),
                    decoded_bytes=decoded_size(dataset),
                ))  # fmt: skip
            else:
                checked.images.append(_image_item(data, name, named_dicom=name.lower().endswith((".dcm", ".dicom"))))
        except UploadRefused as exc:
            problems.extend(exc.problems)
        except ScanDecodeError as exc:
            problems.append(f"{name}: {exc.args[0]}")
    limits = _limits()
    over_budget = checked.slices > limits["slices"] or (
        sum(source.decoded_bytes for source in checked.sources) > limits["decoded_request"]
    )
    if checked.slices > limits["slices"]:
        problems.append(f"The upload holds {checked.slices} slices; at most {limits['slices']} are accepted at once.")
    decoded = sum(source.decoded_bytes for source in checked.sources)
    if decoded > limits["decoded_request"]:
        problems.append(
            f"The upload's DICOM images would decode to {_mb(decoded)}; at most {_mb(limits['decoded_request'])} "
            "are accepted at once (nothing was decoded or stored). Upload the series separately."
        )
    if problems:
        raise UploadRefused(problems, code=REQUEST_BUDGET if over_budget else "invalid")
    return checked


UNPACK_THREADS = 2  # the files of a zipped study decoded at once (OpenCV, zlib: no GIL held)


def unpack_source(
    handle: IO[bytes], *, name: str, kind: str, uid_key: str, skipped: list[Skipped],
    on_slice: Callable[[DicomSlice], None],
) -> int:  # fmt: skip
    """The worker's half, for one stored original: every slice it holds, decoded, de-identified
    and split, is handed to `on_slice` (which stores it) as soon as it is made, in the files'
    order, so a study's slices are never all in memory at once (a zip's files are decoded
    UNPACK_THREADS at a time: at most that many files in memory). A file that cannot be
    decoded is added to `skipped` with its reason. Returns the number of slices made."""
    made = 0

    def one_file(label: str, decoded: Future[list[DicomSlice]] | Skipped) -> None:
        nonlocal made
        if isinstance(decoded, Skipped):  # a member passed over: kept in the files' order
            skipped.append(decoded)
            return
        try:
            slices = decoded.result()
        except (ScanDecodeError, UploadRefused) as exc:
            skipped.append(Skipped(label, str(exc.args[0]) if isinstance(exc, ScanDecodeError) else str(exc)))
            return
        for item in slices:
            on_slice(item)
        made += len(slices)

    with ThreadPoolExecutor(max_workers=UNPACK_THREADS, thread_name_prefix="unpack") as pool:
        if kind == "zip":
            ahead: deque[tuple[str, Future[list[DicomSlice]] | Skipped]] = deque()
            passed_over: list[Skipped] = []
            for label, data in _zip_members(handle, name, passed_over):
                ahead.extend((item.name, item) for item in passed_over)
                passed_over.clear()
                ahead.append((label, pool.submit(dicom_slices, data, name=label, uid_key=uid_key)))
                while len(ahead) >= UNPACK_THREADS:
                    one_file(*ahead.popleft())
            ahead.extend((item.name, item) for item in passed_over)
            while ahead:
                one_file(*ahead.popleft())
        else:
            data = _read_upload(handle, MAX_UPLOAD_BYTES, name)
            one_file(name, pool.submit(dicom_slices, data, name=name, uid_key=uid_key))
    return made


def slice_sort_key(series_rank: dict[str, int], series_uid: str, slice_order: float | None, position: int) -> tuple:
    """DICOM slices grouped by series (first seen first), ordered within it by Instance Number,
    else Image Position along the slice normal, else as they came."""
    rank = series_rank.setdefault(series_uid, len(series_rank))
    return (rank, slice_order if slice_order is not None else 0.0, position)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
