"""A case as a FHIR R5 Bundle (fhir.resources models, so every resource is validated when it
is built): Patient, DiagnosticReport, one Observation per finding (per analysed slice), and
an ImagingStudy of the DICOM slices (the original Study/SOP Instance UIDs for a study that
came from the PACS, the de-identified ones for an upload)."""

from __future__ import annotations

import uuid

from django.utils import timezone
from fhir.resources.bundle import Bundle

from apps.cases.models import Case
from apps.scans.labels import Label
from apps.scans.models import ScanStatus

from .models import DicomInstance, DicomStudy
from .results import ALGORITHM_NAME, FINDING_CODES, PROBABILITY, SCHEME, SEQUENCE_STATE, SEQUENCE_STATES

SYSTEMS = {"SCT": "http://snomed.info/sct", "LN": "http://loinc.org", SCHEME: "urn:clinic-ai:codes",
           "DCM": "http://dicom.nema.org/resources/ontology/DCM"}  # fmt: skip
MR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.4"


def _coding(code) -> dict:
    return {"system": SYSTEMS[code.scheme_designator], "code": code.value, "display": code.meaning}


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def case_fhir_bundle(case: Case) -> Bundle:
    patient_url, report_url, study_url = _urn(), _urn(), _urn()
    patient = case.patient
    resources: list[tuple[str, dict]] = [(patient_url, {
        "resourceType": "Patient",
        "identifier": [{"type": {"text": "MRN"}, "value": patient.mrn}],
        "name": [{"text": patient.name}],
        **({"birthDate": patient.date_of_birth.isoformat()} if patient.date_of_birth else {}),
        "gender": {"F": "female", "M": "male", "O": "other"}.get(patient.sex, "unknown"),
    })]  # fmt: skip
    observations = []
    scans = list(case.scans.all().select_related("prediction"))
    for number, scan in enumerate(scans, start=1):
        if scan.status not in ScanStatus.ANSWERED:
            continue
        rejected = scan.status == ScanStatus.REJECTED
        observation = {
            "resourceType": "Observation",
            "status": "final" if case.is_signed else "preliminary",
            "code": {"text": f"AI finding, slice {number}"},
            "subject": {"reference": patient_url},
            "method": {"text": ALGORITHM_NAME},
            "note": [{"text": "AI output, verified by sign-off" if case.is_signed else "AI output, unverified"}],
        }
        if rejected:
            observation["dataAbsentReason"] = {"text": scan.error[:500] or "Out of distribution: not validated"}
        else:
            prediction = scan.prediction
            observation["valueCodeableConcept"] = {
                "coding": [_coding(FINDING_CODES[Label(prediction.label)])], "text": Label.name_of(prediction.label)
            }
            observation["component"] = [{
                "code": {"coding": [_coding(PROBABILITY)]},
                "valueQuantity": {"value": round(prediction.confidence, 6), "unit": "1",
                                  "system": "http://unitsofmeasure.org", "code": "1"},
            }, {
                "code": {"text": "Model version"}, "valueString": prediction.model_version,
            }, {  # as the SR: is the model validated for this slice's sequence (issue 16)
                "code": {"coding": [_coding(SEQUENCE_STATE)]},
                "valueCodeableConcept": {"coding": [_coding(SEQUENCE_STATES[prediction.validated])]},
            }]  # fmt: skip
            if prediction.not_validated:
                observation["note"].append({"text": f"Not validated for {scan.get_sequence_display()}: "
                                            "read the scan without relying on the label."})
            if prediction.is_low_confidence:  # as the card and the capture's band say it
                observation["note"].append({"text": f"Low confidence: top probability under "
                                            f"{prediction.LOW_CONFIDENCE:.0%}."})
        if scan.format == "DICOM":
            observation["derivedFrom"] = [{"reference": study_url}]
        url = _urn()
        observations.append(url)
        resources.append((url, observation))

    study_resource = _imaging_study(case, scans, patient_url)
    if study_resource:
        resources.append((study_url, study_resource))
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final" if case.is_signed else "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
        "code": {"coding": [{"system": SYSTEMS["LN"], "code": "24590-2", "display": "MR Brain"}]},
        "subject": {"reference": patient_url},
        "issued": timezone.now().isoformat(),
        "result": [{"reference": url} for url in observations],
    }
    if study_resource:
        report["study"] = [{"reference": study_url}]
    if case.is_signed:
        report["conclusion"] = case.conclusion or "Signed without a written conclusion."
        report["effectiveDateTime"] = _iso(case.signed_at)
    resources.insert(1, (report_url, report))
    return Bundle.model_validate({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": timezone.now().isoformat(),
        "entry": [{"fullUrl": url, "resource": resource} for url, resource in resources],
    })  # fmt: skip


def _imaging_study(case: Case, scans: list, patient_url: str) -> dict | None:
    dicom = [scan for scan in scans if scan.format == "DICOM"]
    if not dicom:
        return None
    received = DicomStudy.objects.filter(case=case).first()
    sources = {i.scan_id: i for i in DicomInstance.objects.filter(scan__case=case)}
    series: dict[str, list[dict]] = {}
    for scan in dicom:
        source = sources.get(scan.pk)
        series_uid = source.series_instance_uid if source else scan.series_uid
        sop_class = source.sop_class_uid if source else MR_SOP_CLASS
        instance = {
            "uid": source.sop_instance_uid if source else f"{scan.series_uid}.{scan.instance_number or scan.pk}",
            "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{sop_class}"},
        }
        if scan.instance_number is not None:
            instance["number"] = scan.instance_number
        series.setdefault(series_uid or "unknown", []).append(instance)
    modality = {"coding": [{"system": SYSTEMS["DCM"], "code": "MR"}]}
    study = {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": {"reference": patient_url},
        "modality": [modality],
        "numberOfSeries": len(series),
        "numberOfInstances": sum(len(v) for v in series.values()),
        "series": [
            {"uid": uid, "modality": modality, "numberOfInstances": len(instances), "instance": instances}
            for uid, instances in series.items()
        ],
    }
    if received is not None:
        study["identifier"] = [{"system": "urn:dicom:uid", "value": f"urn:oid:{received.study_instance_uid}"}]
    return study
