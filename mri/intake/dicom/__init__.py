"""DICOM in: recognise a DICOM file by content, refuse what is not an MR image, and decode its
pixels to the gray [0, 1] image that `mri.model.preprocessing.prepare` takes, like a JPEG/PNG scan.

No TensorFlow here (the web process decodes DICOM at upload). pydicom reads the dataset;
pylibjpeg and its plugins (libjpeg, openjpeg, rle) decode the compressed transfer syntaxes
(JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE); native syntaxes (implicit and
explicit little endian, explicit big endian) need nothing more.

Pixel pipeline, one frame at a time (DICOM PS3.3 C.7.6.3, C.11.1, C.11.2):
stored values (signed or not, 8-16 bits, planar configuration undone by pydicom)
→ modality LUT (Rescale Slope/Intercept, per frame for enhanced multi-frame objects)
→ VOI: Window Center/Width when present (LINEAR, LINEAR_EXACT or SIGMOID), else the robust
  stretch of the JPEG path (`mri.intake.gray.normalize_contrast`: the head's 99.5th percentile is white)
→ MONOCHROME1 inverted, so bone and fat are bright as on every other scan.
Colour images (rare for MR: secondary captures) become gray by luminance.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mri.intake.gray import normalize_contrast
from mri.intake.limits import MAX_PIXELS, MAX_SIDE, MIN_SIDE, ScanDecodeError

ACCEPTED_MODALITIES = ("MR",)
# Frames decoded from one file: a multi-frame MR series is tens to a few hundred.
MAX_FRAMES = 1000
_PREAMBLE_END = 132  # 128-byte preamble + "DICM"


def has_dicom_preamble(data: bytes) -> bool:
    return len(data) >= _PREAMBLE_END and data[128:_PREAMBLE_END] == b"DICM"


def looks_like_dicom(data: bytes) -> bool:
    """By content, whatever the file is called: the DICM preamble, or a bare dataset (old
    files written without the Part 10 header) that starts with a group 0002 or 0008 element."""
    if has_dicom_preamble(data):
        return True
    if len(data) < 8:
        return False
    little = int.from_bytes(data[0:2], "little")
    big = int.from_bytes(data[0:2], "big")
    if little not in (0x0002, 0x0008) and big != 0x0008:
        return False
    try:
        dataset = _parse(data, force=True)
        return bool(dataset.get("SOPClassUID") or dataset.get("Modality"))
    except ScanDecodeError:
        return False


def _parse(data: bytes, *, force: bool) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=force)
        # Elements are parsed lazily: touch them all now so a broken file fails here.
        for _element in dataset.iterall():
            pass
    except (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, OSError, NotImplementedError) as exc:
        raise ScanDecodeError(f"The file claims to be DICOM but cannot be read ({_short(exc)}).") from exc
    return dataset


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def read_dicom(data: bytes) -> Any:
    """Parse and check a DICOM upload: a readable dataset, an MR image, with pixel data.

    Returns the pydicom Dataset; raises ScanDecodeError with a message naming the reason."""
    if not data:
        raise ScanDecodeError("The file is empty.")
    if not looks_like_dicom(data):
        raise ScanDecodeError("The file is not DICOM: no DICM preamble and no readable DICOM dataset.")
    dataset = _parse(data, force=not has_dicom_preamble(data))
    if not (dataset.get("SOPClassUID") or dataset.get("Modality") or dataset.get("PixelData")):
        raise ScanDecodeError("The file claims to be DICOM but holds no DICOM image attributes.")
    if "DirectoryRecordSequence" in dataset:
        raise ScanDecodeError("This is a DICOMDIR (an index of a study's files), not an image.")
    modality = str(dataset.get("Modality", "") or "").strip().upper()
    if modality not in ACCEPTED_MODALITIES:
        named = f"Modality {modality}" if modality else "No Modality"
        raise ScanDecodeError(
            f"{named}: only MR images can be analysed (the model reads brain MRI slices)."
        )
    if not any(key in dataset for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ScanDecodeError("The DICOM file has no pixel data: it is not an image.")
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    frames = frame_count(dataset)
    if rows * columns > MAX_PIXELS or max(rows, columns) > MAX_SIDE:
        raise ScanDecodeError(f"The image is {columns}×{rows} pixels; the largest accepted side is {MAX_SIDE}.")
    if min(rows, columns) < MIN_SIDE:
        raise ScanDecodeError(f"The image is {columns}×{rows} pixels; a scan needs at least {MIN_SIDE} per side.")
    if frames > MAX_FRAMES:
        raise ScanDecodeError(f"The file has {frames} frames; at most {MAX_FRAMES} are accepted.")
    check_codestreams(dataset)
    return dataset


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}  # F7: JPEG-LS


def _codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(columns, rows) a compressed frame's own header declares (JPEG family, JPEG-LS, JPEG
    2000 codestream), None for a stream we do not parse here (RLE: sized by the dataset)."""
    start = frame.find(b"\xff\x4f\xff\x51", 0, 4096)  # J2K: SOC then SIZ
    if start >= 0 and len(frame) >= start + 24:
        x, y, x0, y0 = (int.from_bytes(frame[start + 8 + 4 * i : start + 12 + 4 * i], "big") for i in range(4))
        return x - x0, y - y0
    if not frame.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 9 <= len(frame):
        if frame[position] != 0xFF:
            return None
        marker = frame[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(frame[position + 2 : position + 4], "big")
        if marker in _JPEG_SOF:
            rows = int.from_bytes(frame[position + 5 : position + 7], "big")
            return int.from_bytes(frame[position + 7 : position + 9], "big"), rows
        if marker == 0xDA:  # start of scan before any frame header: not a stream we understand
            return None
        position += 2 + length
    return None


def check_codestreams(dataset: Any) -> None:
    """Every compressed frame's own header must declare the dataset's Rows × Columns: a
    decoder allocates what the codestream says, so a 64² header over a 65535² JPEG-LS stream
    would be a decompression bomb the dataset's budget does not see. Reads headers only."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not getattr(syntax, "is_encapsulated", False) or "PixelData" not in dataset:
        return
    from pydicom.encaps import generate_frames

    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    frames = frame_count(dataset)
    try:
        for index, frame in enumerate(generate_frames(dataset.PixelData, number_of_frames=frames)):
            size = _codestream_size(frame)
            if size is not None and size != (columns, rows):
                raise ScanDecodeError(
                    f"Frame {index + 1}'s compressed image is {size[0]}×{size[1]} pixels, not the "
                    f"{columns}×{rows} the file declares: it cannot be decoded safely."
                )
    except (ValueError, TypeError, KeyError) as exc:
        raise ScanDecodeError(f"The DICOM pixel data is not valid encapsulated data ({_short(exc)}).") from exc


def frame_count(dataset: Any) -> int:
    try:
        return max(1, int(dataset.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def stored_frames(dataset: Any) -> np.ndarray:
    """The stored pixel values, frames first: (frames, rows, columns[, 3]). Colour (YBR) comes
    back as RGB. ScanDecodeError when the transfer syntax cannot be decoded here."""
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # pydicom/pylibjpeg raise many types for an undecodable stream
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", None) or str(syntax or "unknown transfer syntax")
        raise ScanDecodeError(f"The DICOM pixel data cannot be decoded ({name}: {_short(exc)}).") from exc
    colour = int(dataset.get("SamplesPerPixel", 1) or 1) > 1
    if frame_count(dataset) == 1:
        pixels = pixels[None]
    if pixels.ndim != (4 if colour else 3):
        raise ScanDecodeError(f"The DICOM pixel data has an unexpected shape {pixels.shape}.")
    return pixels


def _frame_item(dataset: Any, index: int, sequence: str) -> Any | None:
    """An enhanced multi-frame object keeps rescale and window per frame (Per-frame Functional
    Groups) or for all frames (Shared Functional Groups); classic objects at the top level."""
    for groups_name, item_index in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        groups = dataset.get(groups_name)
        if groups and len(groups) > item_index:
            inner = groups[item_index].get(sequence)
            if inner:
                return inner[0]
    return None


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None  # several windows: the first is the default view
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class _Lut:
    slope: float
    intercept: float
    center: float | None
    width: float | None
    function: str


def _frame_lut(dataset: Any, index: int) -> _Lut:
    transform = _frame_item(dataset, index, "PixelValueTransformationSequence") or dataset
    voi = _frame_item(dataset, index, "FrameVOILUTSequence") or dataset
    slope = _number(transform.get("RescaleSlope"))
    intercept = _number(transform.get("RescaleIntercept"))
    return _Lut(
        slope=1.0 if slope in (None, 0.0) else slope,
        intercept=intercept or 0.0,
        center=_number(voi.get("WindowCenter")),
        width=_number(voi.get("WindowWidth")),
        function=str(voi.get("VOILUTFunction", "LINEAR") or "LINEAR").upper(),
    )


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2-3: output in [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _stretch(values: np.ndarray) -> np.ndarray:
    """No window in the file: black at the lowest value, then the JPEG path's stretch. A
    coarse 99.9th-percentile scale first, so one hot pixel cannot push the head into black."""
    low = float(values.min())
    high = float(np.percentile(values, 99.9))
    if high <= low:
        high = float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)
    return normalize_contrast(scaled)


def frame_to_gray(dataset: Any, frame: np.ndarray, index: int = 0) -> np.ndarray:
    """One frame's stored values to float32 gray in [0, 1] (see the module docstring)."""
    if frame.ndim == 3:  # colour: stored values are already display values
        bits = int(dataset.get("BitsStored", 8) or 8)
        rgb = frame.astype(np.float32) / float(2**bits - 1)
        gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(gray, 0.0, 1.0).astype(np.float32)
    lut = _frame_lut(dataset, index)
    values = frame.astype(np.float64) * lut.slope + lut.intercept
    if lut.center is not None and lut.width is not None and lut.width > 1.0:
        gray = _window(values, lut.center, lut.width, lut.function).astype(np.float32)
    else:
        gray = _stretch(values)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        gray = 1.0 - gray  # MONOCHROME1: low values are white
    return np.ascontiguousarray(gray, dtype=np.float32)


def dataset_frames(dataset: Any) -> list[np.ndarray]:
    """Every frame of a checked dataset (read_dicom) as gray [0, 1] images."""
    frames = stored_frames(dataset)
    return [frame_to_gray(dataset, frames[i], i) for i in range(frames.shape[0])]


def decode_dicom(data: bytes) -> list[np.ndarray]:
    """DICOM bytes → one float32 gray [0, 1] image per frame, ready for mri.model.preprocessing.prepare."""
    return dataset_frames(read_dicom(data))


def slice_position(dataset: Any) -> float | None:
    """Where the slice lies along the series' normal (Image Position · (row × column cosines))."""
    position, orientation = dataset.get("ImagePositionPatient"), dataset.get("ImageOrientationPatient")
    try:
        if position is None or orientation is None or len(position) != 3 or len(orientation) != 6:
            return None
        row, column = np.array(orientation[:3], float), np.array(orientation[3:], float)
        value = float(np.dot(np.array(position, float), np.cross(row, column)))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def instance_number(dataset: Any) -> int | None:
    try:
        value = dataset.get("InstanceNumber")
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None
