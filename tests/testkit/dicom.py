"""Builders of DICOM test files, made here with pydicom from real training scans.

One home for every test (and bench/dicom_series.py) that needs DICOM: tests/conftest.py puts
the repository root on sys.path: `from tests.testkit import dicom as dicomdata` from every test folder.

Compressed transfer syntaxes are encoded with what is installed for the tests: pydicom's own
RLE encoder, pylibjpeg-openjpeg (JPEG 2000, through `Dataset.compress`), and imagecodecs
(libjpeg-turbo 3 for JPEG baseline, 12-bit extended and lossless; CharLS for JPEG-LS), whose
codestreams are encapsulated here. pydicom's bundled test files are used as they are: only
files inside the installed wheel (`get_testdata_file(..., download=False)`), never the ones
pydicom downloads on demand.
"""
from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
ENHANCED_MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")

# Every transfer syntax the platform decodes, and the bit depth each one is built with.
TRANSFER_SYNTAXES: dict[str, tuple[UID, int]] = {
    "explicit-le": (ExplicitVRLittleEndian, 16),
    "implicit-le": (ImplicitVRLittleEndian, 16),
    "explicit-be": (ExplicitVRBigEndian, 16),
    "rle": (RLELossless, 16),
    "jpeg-baseline": (JPEGBaseline8Bit, 8),
    "jpeg-extended-12": (JPEGExtended12Bit, 12),
    "jpeg-lossless-p14": (JPEGLossless, 16),
    "jpeg-lossless-sv1": (JPEGLosslessSV1, 16),
    "jpeg-ls-lossless": (JPEGLSLossless, 16),
    "jpeg-ls-near-lossless": (JPEGLSNearLossless, 16),
    "jpeg2000-lossless": (JPEG2000Lossless, 16),
    "jpeg2000": (JPEG2000, 16),
}


@dataclass(frozen=True)
class Identity:
    """Who the file says the patient is, and where it sits in its study."""

    patient_name: str = "DOE^JANE"
    patient_id: str = "MRN-TEST-1"
    study_uid: str = "1.2.826.0.1.3680043.8.498.100"
    series_uid: str = "1.2.826.0.1.3680043.8.498.100.1"
    instance: int = 1
    position_z: float = 0.0


def gray_from_jpeg(data: bytes) -> np.ndarray:
    """The 8-bit gray pixels of a JPEG scan, as the platform's JPEG decoder sees them."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.uint8)


def base_dataset(
    pixels: np.ndarray,
    *,
    bits_stored: int,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    modality: str = "MR",
    identity: Identity = Identity(),
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
) -> Dataset:
    """A classic MR Image (or `modality`) dataset holding `pixels` natively (Explicit VR LE)."""
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = f"{identity.series_uid}.{identity.instance}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = "19610412"
    ds.StudyInstanceUID = identity.study_uid
    ds.SeriesInstanceUID = identity.series_uid
    ds.FrameOfReferenceUID = f"{identity.study_uid}.9"
    ds.StudyDate = "20260102"
    ds.InstanceNumber = identity.instance
    ds.ImagePositionPatient = [0.0, 0.0, identity.position_z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}[
        (ds.BitsAllocated, signed)
    ]
    ds.PixelData = np.ascontiguousarray(pixels.astype(dtype)).tobytes()
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    return ds


def _encapsulated(ds: Dataset, syntax: UID, frames: Iterable[bytes]) -> Dataset:
    ds.PixelData = encapsulate(list(frames))
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def encode(ds: Dataset, key: str) -> Dataset:
    """Re-encode a native dataset in the transfer syntax named `key` (TRANSFER_SYNTAXES)."""
    import imagecodecs

    syntax, _bits = TRANSFER_SYNTAXES[key]
    if key in ("explicit-le", "implicit-le", "explicit-be"):
        ds.file_meta.TransferSyntaxUID = syntax
        return ds
    if key == "rle":
        ds.compress(RLELossless, generate_instance_uid=False)
        return ds
    if key.startswith("jpeg2000"):
        kwargs = {"j2k_cr": [20]} if key == "jpeg2000" else {}
        ds.compress(syntax, encoding_plugin="pylibjpeg", generate_instance_uid=False, **kwargs)
        return ds
    frames = _native_frames(ds)
    if key == "jpeg-baseline":
        streams = [imagecodecs.jpeg8_encode(f.astype(np.uint8), level=95) for f in frames]
    elif key == "jpeg-extended-12":
        streams = [imagecodecs.jpeg8_encode(f.astype(np.uint16), level=95, bitspersample=12) for f in frames]
    elif key.startswith("jpeg-lossless"):
        predictor = 1 if key.endswith("sv1") else 7
        streams = [
            imagecodecs.jpeg8_encode(f, lossless=True, predictor=predictor, bitspersample=int(ds.BitsStored))
            for f in frames
        ]
    elif key == "jpeg-ls-lossless":
        streams = [imagecodecs.jpegls_encode(f) for f in frames]
    else:  # near-lossless, maximum error 2
        streams = [imagecodecs.jpegls_encode(f, level=2) for f in frames]
    return _encapsulated(ds, syntax, streams)


def _native_frames(ds: Dataset) -> list[np.ndarray]:
    pixels = ds.pixel_array
    return list(pixels) if int(ds.get("NumberOfFrames", 1) or 1) > 1 else [pixels]


def to_bytes(ds: Dataset, *, preamble: bool = True) -> bytes:
    syntax = ds.file_meta.TransferSyntaxUID
    out = DicomBytesIO()
    if syntax == ExplicitVRBigEndian:
        # pydicom writes the elements big endian; native pixel words are swapped here.
        if ds.BitsAllocated == 16:
            ds.PixelData = np.frombuffer(ds.PixelData, dtype="<u2").astype(">u2").tobytes()
        ds.save_as(out, implicit_vr=False, little_endian=False, enforce_file_format=preamble)
        return out.getvalue()
    ds.save_as(out, enforce_file_format=preamble)
    return out.getvalue()


# What a T2-weighted spin-echo series says of itself (long TR, long TE: mri.intake.sequence.from_physics).
T2_ATTRIBUTES: dict[str, Any] = {
    "ScanningSequence": "SE", "SequenceVariant": "SK", "RepetitionTime": 4000, "EchoTime": 100,
}  # fmt: skip


def mr_slice_from_jpeg(
    jpeg: bytes,
    *,
    key: str = "explicit-le",
    identity: Identity = Identity(),
    window: bool = True,
    attributes: Mapping[str, Any] | None = None,
) -> bytes:
    """A DICOM MR slice holding exactly the JPEG's gray pixels: 8-bit stored values, or shifted
    to 12/16 bits for the syntaxes built at that depth. With `window`, Window Center/Width map
    the values back onto the JPEG's own 0-255 scale, so the decoded image equals the JPEG's.
    `attributes`: more DICOM attributes by keyword (e.g. T2_ATTRIBUTES: the series' sequence)."""
    gray = gray_from_jpeg(jpeg)
    _syntax, bits = TRANSFER_SYNTAXES[key]
    shift = {8: 0, 12: 4, 16: 8}[bits]
    stored = gray.astype(np.uint16) << shift
    scale = float(1 << shift)
    # Centre/width of the linear VOI function that maps stored 0..255·scale onto 0..1.
    win = (127.5 * scale + 0.5, 255.0 * scale + 1.0) if window else None
    ds = base_dataset(stored, bits_stored=bits, identity=identity, window=win)
    for name, value in (attributes or {}).items():
        setattr(ds, name, value)
    return to_bytes(encode(ds, key))


def series_zip(slices: list[bytes], *, folder: str = "STUDY/SERIES1", extras: dict[str, bytes] | None = None) -> bytes:
    """A zipped study folder: the slices (shuffled names, so order must come from the files),
    a DICOMDIR-like index and any `extras` (name → bytes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index, data in reversed(list(enumerate(slices))):
            archive.writestr(f"{folder}/IM{(7 * index + 3) % 9973:05d}", data)
        archive.writestr("DICOMDIR", b"\x00" * 128 + b"DICM" + b"\x00" * 16)
        for name, data in (extras or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


def bundled(name: str) -> bytes:
    """A test file inside pydicom's wheel (never downloaded)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path, f"{name} is not bundled with pydicom"
    with open(path, "rb") as handle:
        return handle.read()


LABELS_IN_TURN = ("glioma", "notumor", "meningioma", "pituitary")


def training_jpegs(n: int, *, labels: tuple[str, ...] = LABELS_IN_TURN) -> list[bytes]:
    """`n` different real training scans, the labels in turn (slice i is its class's i-th file)."""
    from training.data import DEFAULT_DATA

    files = {label: sorted((DEFAULT_DATA / label).glob("*.jpg")) for label in set(labels)}
    return [files[labels[i % len(labels)]][i].read_bytes() for i in range(n)]


def training_series(
    n: int,
    *,
    labels: tuple[str, ...] = LABELS_IN_TURN,
    key: str = "explicit-le",
    patient_id: str = "MRN-TEST-1",
    study_uid: str = "1.2.826.0.1.3680043.8.498.55",
    attributes: Mapping[str, Any] | None = None,
) -> list[bytes]:
    """`n` slices of one series, made from `training_jpegs` (labels in turn), instance
    numbers 1..n, 5 mm apart, each with `attributes` (mr_slice_from_jpeg). Used by the page,
    e2e and bench code."""
    slices = []
    for i, jpeg in enumerate(training_jpegs(n, labels=labels)):
        identity = Identity(
            patient_id=patient_id, study_uid=study_uid, series_uid=f"{study_uid}.1", instance=i + 1, position_z=5.0 * i
        )
        slices.append(mr_slice_from_jpeg(jpeg, key=key, identity=identity, attributes=attributes))
    return slices


def jpegls_bomb(*, frames: int = 16, side: int = 4096, instance: int = 1) -> bytes:
    """A DICOM decompression bomb (issue 15): `frames` JPEG-LS frames of side² 16-bit zeros,
    a few kB on disk (16 frames at 4096²: ~11 KB), 2·frames·side² bytes once decoded (512 MiB).
    One frame is encoded and repeated, so building it never holds the decoded pixels."""
    import imagecodecs

    ds = base_dataset(np.zeros((64, 64), np.uint16), bits_stored=16,
                      identity=Identity(instance=instance, position_z=float(instance)))  # fmt: skip
    ds.Rows = ds.Columns = side
    if frames > 1:
        ds.NumberOfFrames = frames
    stream = imagecodecs.jpegls_encode(np.zeros((side, side), np.uint16))
    return to_bytes(_encapsulated(ds, JPEGLSLossless, [stream] * frames))


def bomb_zip(count: int, *, frames: int = 16, side: int = 4096) -> bytes:
    """A zipped "series" of `count` JPEG-LS bombs (sub-MB for hundreds of frames)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index in range(count):
            archive.writestr(f"BOMB/IM{index:05d}", jpegls_bomb(frames=frames, side=side, instance=index + 1))
    return out.getvalue()
