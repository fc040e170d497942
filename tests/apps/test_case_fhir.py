"""FHIR (issue 18): GET /api/cases/{id}/fhir/ is a FHIR R5 Bundle with a DiagnosticReport, an
Observation per finding and an ImagingStudy, re-validated here with fhir.resources."""

from django.urls import reverse
from fhir.resources.bundle import Bundle
from rest_framework.test import APIClient

from apps.audit.models import AuditAction, AuditEvent
from apps.cases.services import case_sign
from apps.dicomnet.intake import instance_receive
from apps.dicomnet.models import DicomStudy
from apps.dicomnet.services import node_create
from apps.scans.models import Scan
from apps.scans.services import scan_review
from tests.testkit import dicom as dicomdata
from tests.testkit.data import api_token, finish_scan, reject_scan, unpack_received

STUDY = "1.2.826.0.1.3680043.8.498.9501"


def _resources(body: dict, kind: str) -> list[dict]:
    return [entry["resource"] for entry in body["entry"] if entry["resource"]["resourceType"] == kind]


def test_a_received_study_as_a_valid_fhir_bundle(north, django_capture_on_commit_callbacks):
    node = node_create(created_by=north.admin, ae_title="FHIR_PACS", host="127.0.0.1", port=4242)
    with django_capture_on_commit_callbacks(execute=False):
        for data in dicomdata.training_series(2, patient_id=north.patient.mrn, study_uid=STUDY):
            assert instance_receive(data=data, node=node, actor=node.service_user, source="test").ok
    unpack_received()
    case = DicomStudy.objects.get().case
    first, second = Scan.objects.filter(case=case).order_by("slice_order")
    first = finish_scan(first, "meningioma", 0.77)
    reject_scan(second)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(north.radiologist)}")

    body = client.get(reverse("api:case-fhir", kwargs={"case_id": case.pk})).json()
    Bundle.model_validate(body)  # valid FHIR R5, as a client's library would read it
    (report,) = _resources(body, "DiagnosticReport")
    assert report["status"] == "preliminary"
    observations = _resources(body, "Observation")
    assert len(observations) == 2
    assert len(report["result"]) == 2
    coding = observations[0]["valueCodeableConcept"]["coding"][0]
    assert coding == {"system": "http://snomed.info/sct", "code": "302820008", "display": "Intracranial meningioma"}
    assert observations[0]["component"][0]["valueQuantity"]["value"] == 0.77
    sequence_state = observations[0]["component"][2]["valueCodeableConcept"]["coding"][0]
    assert sequence_state["code"] == "SEQUNK"  # no sequence attributes in these slices
    assert len(observations[0]["note"]) == 1
    assert "dataAbsentReason" in observations[1]  # the OOD gate's refusal, no finding
    (study,) = _resources(body, "ImagingStudy")
    assert study["identifier"][0]["value"] == f"urn:oid:{STUDY}"  # the PACS's own study
    assert [i["uid"] for i in study["series"][0]["instance"]] == [f"{STUDY}.1.1", f"{STUDY}.1.2"]
    assert AuditEvent.objects.filter(action=AuditAction.EXPORT, object_id=str(case.pk), detail="fhir bundle").exists()

    scan_review(scan=first, reviewer=north.radiologist, agrees=True)
    case_sign(case=case, signer=north.radiologist, conclusion="Meningioma.")
    body = client.get(reverse("api:case-fhir", kwargs={"case_id": case.pk})).json()
    (report,) = _resources(body, "DiagnosticReport")
    assert report["status"] == "final"
    assert report["conclusion"] == "Meningioma."


def test_a_result_on_a_sequence_not_validated_says_so(north):
    from apps.scans.models import Prediction

    Scan.objects.filter(pk=north.scan.pk).update(sequence="t2", sequence_source="dicom")
    Prediction.objects.filter(scan=north.scan).update(validated=False)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(north.staff)}")
    body = client.get(reverse("api:case-fhir", kwargs={"case_id": north.case.pk})).json()
    Bundle.model_validate(body)
    (observation,) = _resources(body, "Observation")
    state = observation["component"][2]["valueCodeableConcept"]["coding"][0]
    assert (state["code"], state["display"]) == ("SEQNOTVAL", "Not validated for this MRI sequence")
    assert {"text": "Not validated for T2: read the scan without relying on the label."} in observation["note"]
    assert not any(note["text"].startswith("Low confidence") for note in observation["note"])
    # Unsure too: said as the card says it.
    Prediction.objects.filter(scan=north.scan).update(
        label="glioma", probabilities={"glioma": 0.55, "meningioma": 0.25, "notumor": 0.15, "pituitary": 0.05}
    )
    body = client.get(reverse("api:case-fhir", kwargs={"case_id": north.case.pk})).json()
    (observation,) = _resources(body, "Observation")
    assert {"text": "Low confidence: top probability under 70%."} in observation["note"]


def test_an_uploaded_case_without_dicom_has_no_imaging_study(north):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(north.staff)}")
    body = client.get(reverse("api:case-fhir", kwargs={"case_id": north.case.pk})).json()
    Bundle.model_validate(body)
    assert not _resources(body, "ImagingStudy")
    assert len(_resources(body, "Observation")) == 1
