"""The DICOM objects that carry a case's results back into its original study (docs/pacs.md):

- `structured_report`: a Comprehensive 3D SR holding a TID 1500 Measurement Report, one
  measurement group per analysed slice (finding with its SNOMED CT code where one exists,
  calibrated probability, out-of-distribution state, algorithm name and version, the source
  instance); unverified until the case is signed, then verified (observer, conclusion).
- `secondary_captures`: one RGB Secondary Capture per analysed slice, the heatmap overlay with
  "AI output, unverified" burnt in, in a series of its own.
- `encapsulated_pdf`: the signed report (apps/cases/reports.py) as Encapsulated PDF.

The patient and study attributes come from the ORIGINAL identifiers kept in DicomStudy /
DicomInstance; the stored (de-identified) files give the image attributes only.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import highdicom as hd
import numpy as np
from django.conf import settings
from django.utils import timezone
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from apps.scans.labels import Label
from apps.scans.models import Prediction, Scan, ScanStatus

from .models import DicomInstance, DicomStudy

MANUFACTURER = "Clinic MRI platform"
ALGORITHM_NAME = "Brain tumour MRI classifier (Xception)"
UNVERIFIED_LINE = "AI output, unverified"
CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS
SR_SERIES_NUMBER, SC_SERIES_NUMBER, PDF_SERIES_NUMBER = 9901, 9902, 9903
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
# Enhanced MR, Enhanced MR Color, Legacy Converted Enhanced MR Image Storage
MULTI_FRAME_MR = {"1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.3", "1.2.840.10008.5.1.4.1.1.4.4"}

# Our private coding scheme for what SNOMED CT has no concept of (docs/pacs.md lists them).
SCHEME = "99CLINICAI"
FINDING_CODES: dict[str, Code] = {
    Label.GLIOMA: Code("393563007", "SCT", "Glioma"),
    Label.MENINGIOMA: Code("302820008", "SCT", "Intracranial meningioma"),
    Label.PITUITARY: Code("254956000", "SCT", "Pituitary adenoma"),
    Label.NOTUMOR: Code("NOTUMOR", SCHEME, "No tumour class"),
}
NOT_ANALYSED = Code("OOD", SCHEME, "Not validated: out of distribution")
PROBABILITY = Code("PROB", SCHEME, "Calibrated probability of finding")
OOD_STATE = Code("OODSTATE", SCHEME, "Out-of-distribution state")
# The gate accepting a slice says it looks like a brain MRI slice, not that the model is
# validated for it: that is the sequence's state, below (issue 16). A new code, since INDIST
# ("Within the validated distribution", SRs sent before 2026-12-07) claimed more: retired.
IN_DISTRIBUTION = Code("OODACCEPT", SCHEME, "Accepted by the out-of-distribution gate")
OUT_OF_DISTRIBUTION = Code("OUTDIST", SCHEME, "Out of distribution, not validated")
SEQUENCE_STATE = Code("SEQSTATE", SCHEME, "MRI sequence validation state")
SEQUENCE_STATES: dict[bool | None, Code] = {  # Prediction.validated
    True: Code("SEQVAL", SCHEME, "Validated for this MRI sequence"),
    False: Code("SEQNOTVAL", SCHEME, "Not validated for this MRI sequence"),
    None: Code("SEQUNK", SCHEME, "MRI sequence unknown: validation not known"),
}
VERIFICATION = Code("VERIF", SCHEME, "Verification state")
UNVERIFIED = Code("UNVERIF", SCHEME, "AI output, unverified")
VERIFIED = Code("VERIFIED", SCHEME, "Verified by a radiologist")
MR_BRAIN = Code("24590-2", "LN", "MR Brain")


@dataclass(frozen=True)
class Slice:
    """One received frame, its scan, and the image attributes as the PACS knows them."""

    instance: DicomInstance
    scan: Scan
    source: Dataset  # the stored file with the original identifiers put back


def _dt(value) -> tuple[str, str]:
    local = timezone.localtime(value)
    return local.strftime("%Y%m%d"), local.strftime("%H%M%S")


def source_dataset(study: DicomStudy, instance: DicomInstance, frames: int = 1) -> Dataset:
    """The stored de-identified instance with the original patient, study, series and
    instance identifiers put back (in memory only): what the PACS has."""
    with instance.scan.dicom.open("rb") as handle:
        ds = dcmread(handle)
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate, ds.StudyTime = study.study_date, study.study_time
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.SeriesInstanceUID = instance.series_instance_uid
    ds.SOPInstanceUID = instance.sop_instance_uid
    ds.SOPClassUID = instance.sop_class_uid
    ds.file_meta.MediaStorageSOPInstanceUID = instance.sop_instance_uid
    ds.file_meta.MediaStorageSOPClassUID = instance.sop_class_uid
    if frames > 1:  # one frame of a multi-frame original: referenced by its frame number
        ds.NumberOfFrames = frames
    return ds


def study_slices(study: DicomStudy) -> list[Slice]:
    """The study's analysed or gate-rejected frames, in series and slice order; a removed scan
    is left out (the join does not go through Scan's live manager, so it is filtered here)."""
    instances = (
        DicomInstance.objects.filter(
            study=study, scan__status__in=ScanStatus.ANSWERED, scan__removed_at__isnull=True
        )
        .select_related("scan", "scan__prediction")
        .order_by("series_instance_uid", "scan__slice_order", "frame_number", "id")
    )
    frames = Counter(DicomInstance.objects.filter(study=study).values_list("sop_instance_uid", flat=True))
    return [Slice(i, i.scan, source_dataset(study, i, frames[i.sop_instance_uid])) for i in instances]


def _group(item: Slice, number: int, study_version: str) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    scan = item.scan
    # A frame of a multi-frame IOD is referenced by its number (a classic IOD may carry none).
    multi = item.instance.sop_class_uid in MULTI_FRAME_MR and int(item.source.get("NumberOfFrames", 1) or 1) > 1
    frames = [item.instance.frame_number] if multi else None
    source = hd.sr.SourceImageForMeasurementGroup(
        referenced_sop_class_uid=item.instance.sop_class_uid,
        referenced_sop_instance_uid=item.instance.sop_instance_uid,
        referenced_frame_numbers=frames,
    )
    rejected = scan.status == ScanStatus.REJECTED
    prediction = None if rejected else scan.prediction
    # A slice the gate refused stores no prediction: the study's model version is its algorithm's.
    version = prediction.model_version if prediction else study_version
    evaluations = [
        hd.sr.QualitativeEvaluation(OOD_STATE, OUT_OF_DISTRIBUTION if rejected else IN_DISTRIBUTION),
    ]
    measurements = []
    if prediction is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(SEQUENCE_STATE, SEQUENCE_STATES[prediction.validated]))
        measurements.append(
            hd.sr.Measurement(name=PROBABILITY, value=round(prediction.confidence, 6), unit=codes.UCUM.NoUnits)
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=hd.UID(), identifier=f"Slice {number} (instance {item.instance.sop_instance_uid})"[:64]
        ),
        finding_type=NOT_ANALYSED if rejected else FINDING_CODES[Label(prediction.label)],
        algorithm_id=hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=version[:64]),
        source_images=[source],
        measurements=measurements or None,
        qualitative_evaluations=evaluations,
    )


def by_series(slices: list[Slice]) -> list[list[Slice]]:
    """The slices grouped by their original series, in order."""
    groups: dict[str, list[Slice]] = {}
    for item in slices:
        groups.setdefault(item.instance.series_instance_uid, []).append(item)
    return list(groups.values())


def _study_version(slices: list[Slice]) -> str:
    versions = sorted({i.scan.prediction.model_version for i in slices if i.scan.status == ScanStatus.DONE})
    return ", ".join(versions) or "not recorded"


def structured_report(
    study: DicomStudy, slices: list[Slice], *, series_uid: str, sop_uid: str, verified: bool, instance_number: int = 1
) -> Dataset:
    """The SR of the slices of one analysed series."""
    observation = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=hd.UID(), name=settings.DICOM_AE_TITLE, manufacturer_name=MANUFACTURER
            ),
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=observation,
        procedure_reported=MR_BRAIN,
        imaging_measurements=[_group(item, n, _study_version(slices)) for n, item in enumerate(slices, start=1)],
    )
    container = report[0]
    state = VERIFIED if verified else UNVERIFIED
    container.ContentSequence.append(
        hd.sr.CodeContentItem(name=VERIFICATION, value=state, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    )
    case = study.case
    kwargs = {}
    if verified:
        conclusion = case.conclusion.strip() or "Signed without a written conclusion."
        container.ContentSequence.append(
            hd.sr.TextContentItem(
                name=codes.DCM.Conclusion, value=conclusion[:1024], relationship_type=CONTAINS
            )
        )
        signer = case.signed_by
        name = f"{signer.last_name}^{signer.first_name}" if signer.last_name else f"{signer.get_username()}^"
        kwargs = {"verifying_observer_name": name[:64], "verifying_organization": case.clinic.name[:64]}
    sr = hd.sr.Comprehensive3DSR(
        evidence=[item.source for item in slices],
        content=report,
        series_instance_uid=series_uid,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=verified,
        is_verified=verified,
        institution_name=case.clinic.name[:64],
        **kwargs,
    )
    sr.SeriesDescription = "AI results (verified)" if verified else "AI results, unverified"
    return sr


@lru_cache(maxsize=8)  # one font file read per size, not one per line of every capture
def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf"):  # Debian's fonts-dejavu-core
        path = Path("/usr/share/fonts/truetype/dejavu") / name
        if path.is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def band_lines(lines: list[str], width: int) -> tuple[int, list[str]]:
    """The font size and `lines` as burnt on a capture `width` pixels wide: each wrapped at its
    spaces to fit (on a narrow slice a warning must not be cut off at the edge)."""
    size = max(12, width // 28)
    font, room = _font(size), max(1, width - 12)
    fitted = []
    for line in lines:
        current = ""
        for word in line.split():
            longer = f"{current} {word}" if current else word
            if current and font.getlength(longer) > room:
                fitted.append(current)
                current = word
            else:
                current = longer
        fitted.append(current)
    return size, fitted


def burnt_in(overlay_png: bytes, lines: list[str]) -> np.ndarray:
    """The overlay as RGB pixels with `lines` written on a dark band at the top."""
    image = Image.open(io.BytesIO(overlay_png)).convert("RGB")
    size, fitted = band_lines(lines, image.width)
    band = (size + 6) * len(fitted) + 8
    canvas = Image.new("RGB", (image.width, image.height + band), (0, 0, 0))
    canvas.paste(image, (0, band))
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(fitted):
        draw.text((6, 4 + row * (size + 6)), line, fill=(255, 255, 0), font=_font(size))
    return np.asarray(canvas, dtype=np.uint8)


def capture_lines(prediction: Prediction) -> list[str]:
    """The band burnt above a slice's overlay: unverified, the class and its probability, and
    what the scan card says beside them (a PACS viewer shows only the pixels)."""
    lines = [UNVERIFIED_LINE, f"{Label.name_of(prediction.label)} {prediction.confidence * 100:.1f}%"]
    if prediction.not_validated:
        lines.append(f"NOT VALIDATED FOR {prediction.scan.get_sequence_display().upper()}")
    if prediction.is_low_confidence:
        lines.append("LOW CONFIDENCE")
    return lines


def secondary_captures(slices: list[Slice], *, series_uid: str, uid_root: str) -> list[Dataset]:
    out = []
    analysed = [item for item in slices if item.scan.status == ScanStatus.DONE]
    for number, item in enumerate(analysed, start=1):
        prediction = item.scan.prediction
        with prediction.overlay.open("rb") as handle:
            overlay = handle.read()
        lines = capture_lines(prediction)
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=item.source,
            pixel_array=burnt_in(overlay, lines),
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=series_uid,
            series_number=SC_SERIES_NUMBER,
            sop_instance_uid=f"{uid_root}.{number}",
            instance_number=number,
            manufacturer=MANUFACTURER,
            patient_orientation=("L", "P"),
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
        sc.SeriesDescription = "AI heatmaps, unverified"
        sc.BurnedInAnnotation = "YES"
        sc.Laterality = ""  # Type 2C in General Series; a brain is not a paired body part
        sc.ImageComments = f"{UNVERIFIED_LINE}. Source instance {item.instance.sop_instance_uid}"[:10240]
        sc.DerivationDescription = f"Heatmap overlay ({ALGORITHM_NAME} {prediction.model_version})"[:1024]
        out.append(sc)
    return out


def encapsulated_pdf(study: DicomStudy, pdf: bytes, *, series_uid: str, sop_uid: str) -> Dataset:
    """PS3.3 A.45.1 Encapsulated PDF IOD."""
    now_date, now_time = _dt(timezone.now())
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = ENCAPSULATED_PDF_STORAGE, sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = now_date, now_time
    # Patient, General Study
    ds.PatientName, ds.PatientID = study.patient_name, study.patient_id
    ds.PatientBirthDate, ds.PatientSex = study.patient_birth_date, study.patient_sex
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate, ds.StudyTime = study.study_date, study.study_time
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StudyID, ds.AccessionNumber = study.study_id, study.accession_number
    # Encapsulated Document Series, General Equipment, SC Equipment
    ds.Modality = "DOC"
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, PDF_SERIES_NUMBER
    ds.SeriesDescription = "Signed report"
    ds.Manufacturer = MANUFACTURER
    ds.ConversionType = "WSD"
    # Encapsulated Document
    ds.InstanceNumber = 1
    signed = study.case.signed_at or timezone.now()
    ds.ContentDate, ds.ContentTime = _dt(signed)
    ds.AcquisitionDateTime = "".join(_dt(signed))
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "Brain MRI AI report (signed)"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator = "18748-4", "LN"
    concept.CodeMeaning = "Diagnostic imaging report"
    ds.ConceptNameCodeSequence = [concept]
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds
