"""De-identification of DICOM on ingest, by ALLOW-LIST: the stored dataset is rebuilt from the
attributes the product needs, never cleaned of the ones a table names.

PS3.15 Annex E's Basic Profile is a removal list: whatever it does not name (a vendor's
public attribute, a made-up (0008,9999), a future edition's PHI) would survive. Here a new
dataset is built and only the keywords below are copied into it (at every nesting level, for
the functional-group sequences an enhanced MR object needs):
- the image pixel module, rescale and window (what `mri.intake.dicom` decodes);
- geometry (position, orientation, spacing), which orders a series and measures it;
- what describes the acquisition (ScanningSequence, SequenceVariant, RepetitionTime, EchoTime,
  InversionTime, ...): coded or numeric values, or short free text kept only when it does not
  name the patient (`_carries_identity`: SeriesDescription, ContrastBolusAgent);
- the exam date (StudyDate, SeriesDate) kept UNSHIFTED, so the patient's timeline orders priors
  by when they were scanned; times of day are not kept. PS3.15's "Retain Longitudinal Temporal
  Information with Full Dates" option: LongitudinalTemporalInformationModified = UNMODIFIED.
- UIDs replaced by a keyed hash (`2.25.<sha-256 of key + UID>`), not at random, so every file of
  a study gets the same new Study/Series/Frame of Reference UIDs whichever upload it came in;
- the patient/study attributes a valid MR object must carry (type 2) are present and EMPTY.
The 128-byte preamble is zeroed (a fresh dataset carries none, and `write` checks it), so a
name, a birth date or a PE header (a PE/DICOM polyglot, CVE-2019-11687) in the uploaded
preamble is never stored. File meta is rebuilt from the transfer syntax alone.
What the case needs (patient, study date) is in our database, never read back from the file.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

DEIDENTIFICATION_METHOD = "Allow-list rebuild (PS3.15 E.1 Basic Profile, dates retained)"  # LO: 64 chars max
PREAMBLE = b"\x00" * 128

# Copied as they are (numbers, codes): they cannot name a person.
_KEEP = frozenset(
    {
        # SOP common, image type
        "SpecificCharacterSet", "SOPClassUID", "ImageType", "Modality", "SeriesNumber", "InstanceNumber",
        "AcquisitionNumber",
        # Image pixel module (PS3.3 C.7.6.3), multi-frame, compression history
        "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
        "HighBit", "PixelRepresentation", "PlanarConfiguration", "PixelAspectRatio", "NumberOfFrames",
        "FrameIncrementPointer", "LossyImageCompression", "LossyImageCompressionRatio",
        "LossyImageCompressionMethod", "RedPaletteColorLookupTableDescriptor",
        "GreenPaletteColorLookupTableDescriptor", "BluePaletteColorLookupTableDescriptor",
        "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
        "PixelData",
        # Modality LUT and VOI (C.11.1, C.11.2)
        "RescaleIntercept", "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth", "VOILUTFunction",
        # Geometry (C.7.6.2), slice ordering
        "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
        "SpacingBetweenSlices", "SliceLocation", "PatientPosition",
        # What describes the acquisition (C.8.3.1, C.8.13)
        "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime",
        "InversionTime", "EchoTrainLength", "FlipAngle", "MagneticFieldStrength", "NumberOfAverages",
        "ImagingFrequency", "ImagedNucleus", "EchoNumbers", "EffectiveEchoTime", "AcquisitionContrast",
        "PulseSequenceName",
        # The pixels' own declarations (a "YES" is refused at upload; kept so the file says so)
        "BurnedInAnnotation", "RecognizableVisualFeatures",
        # Enhanced MR (C.7.6.16): the functional groups the decoder reads, and their items
        "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence", "PixelValueTransformationSequence",
        "FrameVOILUTSequence", "PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence",
        "FrameContentSequence", "MRImageFrameTypeSequence", "MREchoSequence", "MRTimingAndRelatedParametersSequence",
        "FrameType", "InStackPositionNumber", "StackID", "TemporalPositionIndex", "DimensionIndexValues",
        # The exam date, unshifted (see the module docstring)
        "StudyDate", "SeriesDate",
    }
)  # fmt: skip
# Free text, kept only when it does not carry the patient's identity (`_carries_identity`).
_KEEP_IF_ANONYMOUS = frozenset({"SeriesDescription", "ContrastBolusAgent"})
_REPLACE_UID = frozenset({"SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"})
# Type 2 in the MR Image IOD: present, and empty here.
_EMPTY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyTime", "ReferringPhysicianName",
          "StudyID", "AccessionNumber")  # fmt: skip


def replacement_uid(uid: str, *, key: str) -> str:
    """The same UID in, the same new UID out, for everyone holding `key`; not reversible."""
    digest = hashlib.sha256(f"{key}\x00{uid}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _identity_tokens(source: Dataset) -> list[str]:
    """What names the patient in the source dataset: name parts, ids, the birth date as written
    in the usual forms. Tokens shorter than 2 characters would match anything."""
    tokens: list[str] = []
    name = str(source.get("PatientName", "") or "")
    tokens += [part for part in re.split(r"[\^=\s,]+", name) if len(part) >= 2]
    for keyword in ("PatientID", "OtherPatientIDs", "AccessionNumber", "IssuerOfPatientID", "PatientBirthName",
                    "PatientMotherBirthName", "OtherPatientNames"):  # fmt: skip
        value = source.get(keyword)
        values = list(value) if type(value).__name__ == "MultiValue" else [value]
        for item in values:
            tokens += [part for part in re.split(r"[\^=\s,]+", str(item or "")) if len(part) >= 2]
    birth = str(source.get("PatientBirthDate", "") or "").strip()
    if re.fullmatch(r"\d{8}", birth):
        y, m, d = birth[:4], birth[4:6], birth[6:]
        tokens += [birth, f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}{m}{y}"]
    return tokens


def _carries_identity(text: str, tokens: list[str]) -> bool:
    for token in tokens:
        # A whole word (letters and digits around it do not count as a match: "T1" in "T1W").
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", text, flags=re.IGNORECASE):
            return True
    return False


def _copy(element: DataElement) -> DataElement:
    copied = DataElement(element.tag, element.VR, element.value, is_undefined_length=element.is_undefined_length)
    return copied


def _rebuild(source: Dataset, *, key: str, tokens: list[str]) -> Dataset:
    """A new dataset holding only the allow-listed attributes of `source` (recursively)."""
    target = Dataset()
    for element in source:
        keyword = element.keyword
        if not keyword or element.tag.is_private:
            continue
        if keyword in _REPLACE_UID:
            value = str(element.value or "")
            target.add_new(element.tag, "UI", replacement_uid(value, key=key) if value else "")
        elif keyword in _KEEP_IF_ANONYMOUS:
            text = str(element.value or "")
            if not _carries_identity(text, tokens):
                if text or keyword == "ContrastBolusAgent":  # an empty agent says something too
                    target.add_new(element.tag, element.VR, text[:64])
            elif keyword == "ContrastBolusAgent":
                # An agent was named, with the patient's identity in it: keep "some agent" without
                # the words, so the sequence reads as unknown contrast, never as no contrast.
                target.add_new(element.tag, element.VR, "ANONYMIZED")
        elif keyword in _KEEP:
            if element.VR == "SQ":
                target.add_new(element.tag, "SQ", Sequence([_rebuild(item, key=key, tokens=tokens)
                                                            for item in element.value]))  # fmt: skip
            else:
                target.add(_copy(element))
    return target


def dicom_deidentify(dataset: Dataset, *, key: str) -> Dataset:
    """A NEW de-identified dataset built from `dataset` (left as it is). `key` keys the UID
    replacement. Write it with `write`, which checks the preamble is zero."""
    clean = _rebuild(dataset, key=key, tokens=_identity_tokens(dataset))
    for keyword in _EMPTY:
        setattr(clean, keyword, "")
    meta = FileMetaDataset()
    source_meta = getattr(dataset, "file_meta", None)
    syntax = getattr(source_meta, "TransferSyntaxUID", None)
    if syntax is not None:
        meta.TransferSyntaxUID = syntax
    if "SOPClassUID" in clean:
        meta.MediaStorageSOPClassUID = clean.SOPClassUID
    if "SOPInstanceUID" in clean:
        meta.MediaStorageSOPInstanceUID = clean.SOPInstanceUID
    clean.file_meta = meta
    clean.PatientIdentityRemoved = "YES"
    clean.LongitudinalTemporalInformationModified = "UNMODIFIED"  # dates kept as they were
    clean.DeidentificationMethod = DEIDENTIFICATION_METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    retained = Dataset()
    retained.CodeValue, retained.CodingSchemeDesignator = "113106", "DCM"
    retained.CodeMeaning = "Retain Longitudinal Temporal Information Full Dates Option"
    clean.DeidentificationMethodCodeSequence = Sequence([code, retained])
    return clean


def write(dataset: Dataset) -> bytes:
    """A de-identified dataset as a DICOM Part 10 file with a zero preamble."""
    from pydicom.filebase import DicomBytesIO

    dataset.preamble = PREAMBLE  # never the upload's: a name, a birth date or a PE header could be there
    out = DicomBytesIO()
    dataset.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    if data[:128] != PREAMBLE:  # pragma: no cover - pydicom writes what it is given
        raise RuntimeError("the de-identified file's preamble is not zero")
    return data


def exam_date(dataset: Dataset) -> Any:
    """The exam's date (StudyDate, else SeriesDate) as a `datetime.date`, None if absent or invalid."""
    from datetime import date

    for keyword in ("StudyDate", "SeriesDate"):
        text = str(dataset.get(keyword, "") or "").strip()
        if re.fullmatch(r"\d{8}", text):
            try:
                return date(int(text[:4]), int(text[4:6]), int(text[6:]))
            except ValueError:
                continue
    return None
