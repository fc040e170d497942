"""DICOMweb STOW-RS (issue 18): POST /dicomweb/studies with an API token and a
multipart/related body, through the same intake as the C-STORE receiver; the standard
Store Instances Response in DICOM JSON."""

from __future__ import annotations

import uuid

from django.urls import reverse
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from rest_framework.test import APIClient

from apps.cases.models import Case
from apps.dicomnet.models import DicomInstance, DicomStudy
from apps.scans.models import Scan
from tests.testkit import dicom as dicomdata
from tests.testkit.data import api_token, finish_scan, unpack_received

STUDY = "1.2.826.0.1.3680043.8.498.8001"
REFERENCED, FAILED, REASON, FAILURE_REASON = "00081199", "00081198", "00000902", "00081197"


def _multipart(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: " + ctype.encode() + b"\r\n\r\n" + data + b"\r\n"
        for ctype, data in parts
    )
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return body + b"--" + boundary.encode() + b"--\r\n", content_type


def _post(client: APIClient, parts: list[tuple[str, bytes]], **extra):
    body, content_type = _multipart(parts)
    return client.generic("POST", reverse("dicomweb:stow"), body, content_type=content_type,
                          HTTP_ACCEPT="application/dicom+json", **extra)  # fmt: skip


def _client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def _uid(data: bytes) -> str:
    return dcmread(DicomBytesIO(data)).SOPInstanceUID


def _first_of_two_stored(world, user, capture) -> tuple[Case, bytes, bytes]:
    """A two-instance study of the world's patient: `user` stores the first over STOW-RS and it is
    unpacked into a new case. (that case, the first instance, the later one, not sent yet)"""
    first, later = dicomdata.training_series(2, patient_id=world.patient.mrn, study_uid=STUDY)
    with capture(execute=False):
        assert _post(_client(user), [("application/dicom", first)]).status_code == 200
    unpack_received()
    return DicomStudy.objects.get(study_instance_uid=STUDY).case, first, later


def _read_and_sign(case: Case, radiologist) -> None:
    """The case's one scan analysed, read and the case signed: locked (issue 15)."""
    from apps.cases.services import case_sign
    from apps.scans.services import scan_review

    scan_review(scan=finish_scan(Scan.objects.get(case=case), "glioma", 0.97), reviewer=radiologist, agrees=True)
    case_sign(case=case, signer=radiologist, conclusion="No change.")


def test_good_and_bad_parts_get_the_standard_response(north, django_capture_on_commit_callbacks):
    good = dicomdata.training_series(2, patient_id=north.patient.mrn, study_uid=STUDY)
    ct = dcmread(DicomBytesIO(dicomdata.training_series(1, study_uid=STUDY + ".9")[0]))
    ct.Modality = "CT"
    ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = STUDY + ".9.77"
    parts = [
        ("application/dicom", good[0]),
        ("application/dicom", dicomdata.to_bytes(ct)),
        ("application/dicom", good[1][:300]),  # truncated
        ("application/dicom", good[1]),
    ]
    with django_capture_on_commit_callbacks(execute=False):
        response = _post(_client(north.staff), parts)
    assert response.status_code == 202, response.content  # some stored, some failed
    assert response["Content-Type"].startswith("application/dicom+json")
    body = response.json()
    assert [item["00081155"]["Value"][0] for item in body[REFERENCED]["Value"]] == [_uid(good[0]), _uid(good[1])]
    failed = body[FAILED]["Value"]
    assert len(failed) == 2
    assert failed[0]["00081155"]["Value"] == [STUDY + ".9.77"]
    assert "Modality CT" in failed[0][REASON]["Value"][0]
    assert all(item[FAILURE_REASON]["Value"] == [0xC000] for item in failed)
    assert failed[1][REASON]["Value"][0]  # the truncated part says why too
    study = DicomStudy.objects.get(study_instance_uid=STUDY)
    assert study.case.clinic == north.clinic
    assert study.case.patient == north.patient
    assert study.node is None  # STOW-RS: no node; results go back only to nodes (docs/pacs.md)
    assert not Scan.objects.filter(case=study.case).exists()  # the web process decodes nothing
    assert len(unpack_received()) == 2  # the worker's job, one study upload per stored part
    assert Scan.objects.filter(case=study.case).count() == 2

    # Sent again: stored once, answered as stored.
    with django_capture_on_commit_callbacks(execute=False):
        again = _post(_client(north.staff), parts[:1])
    assert again.status_code == 200
    assert unpack_received() == []
    assert Scan.objects.filter(case=study.case).count() == 2


def test_all_bad_is_a_409_and_stores_nothing(north):
    response = _post(_client(north.staff), [("application/dicom", b"not dicom at all"), ("text/plain", b"hi")])
    assert response.status_code == 409
    reasons = [item[REASON]["Value"][0] for item in response.json()[FAILED]["Value"]]
    assert "not DICOM" in reasons[0]
    assert "text/plain" in reasons[1]
    assert not DicomInstance.objects.exists()


def test_no_token_is_a_401_and_a_wrong_content_type_a_415(north):
    (data,) = dicomdata.training_series(1, study_uid=STUDY)
    assert _post(APIClient(), [("application/dicom", data)]).status_code == 401
    response = _client(north.staff).generic(
        "POST", reverse("dicomweb:stow"), data, content_type="application/dicom"
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert not DicomStudy.objects.exists()


def test_a_second_clinic_storing_the_same_study_gets_its_own_case(north, south, django_capture_on_commit_callbacks):
    slices = dicomdata.training_series(1, patient_id=north.patient.mrn, study_uid=STUDY)
    with django_capture_on_commit_callbacks(execute=False):
        assert _post(_client(north.staff), [("application/dicom", slices[0])]).status_code == 200
        assert _post(_client(south.staff), [("application/dicom", slices[0])]).status_code == 200
    unpack_received()
    north_study, south_study = (DicomStudy.objects.get(clinic=w.clinic) for w in (north, south))
    assert north_study.case_id != south_study.case_id
    assert south_study.case.patient.clinic == south.clinic
    assert Scan.objects.filter(case=north_study.case).count() == 1


def test_an_instance_for_a_signed_study_is_a_failed_part_with_the_reason(north, django_capture_on_commit_callbacks):
    """A signed case is locked (issue 15): a later instance of its study is refused for that part
    alone, with why, not the whole request."""
    case, _, later = _first_of_two_stored(north, north.staff, django_capture_on_commit_callbacks)
    _read_and_sign(case, north.radiologist)
    with django_capture_on_commit_callbacks(execute=False):
        response = _post(_client(north.staff), [("application/dicom", later)])
    assert response.status_code == 409, response.content  # none stored
    (failed,) = response.json()[FAILED]["Value"]
    assert failed["00081155"]["Value"] == [_uid(later)]
    assert "addendum" in failed[REASON]["Value"][0].lower() or "radiologist" in failed[REASON]["Value"][0].lower()
    assert Scan.objects.filter(case=case).count() == 1


def test_instances_for_a_deleted_case_are_failed_parts_with_the_reason(north, django_capture_on_commit_callbacks):
    """A deleted case is not reopened by the PACS: a new instance of its study and one already
    received are both refused with why (not a server error, not "stored")."""
    from apps.cases.services import case_soft_delete
    from apps.dicomnet.intake import CASE_DELETED
    from apps.scans.models import StudyUpload

    case, first, later = _first_of_two_stored(north, north.staff, django_capture_on_commit_callbacks)
    finish_scan(Scan.objects.get(case=case), "glioma", 0.9)
    case_soft_delete(case=case, by=north.admin)
    with django_capture_on_commit_callbacks(execute=False):
        response = _post(_client(north.staff), [("application/dicom", later), ("application/dicom", first)])
    assert response.status_code == 409, response.content  # none stored
    failed = response.json()[FAILED]["Value"]
    assert [item["00081155"]["Value"] for item in failed] == [[_uid(later)], [_uid(first)]]
    assert [item[REASON]["Value"][0] for item in failed] == [CASE_DELETED, CASE_DELETED]
    assert StudyUpload.objects.filter(case_id=case.pk).count() == 1
    assert DicomInstance.objects.count() == 1


def test_a_radiologist_does_not_add_to_a_signed_study_through_stow_rs(north, django_capture_on_commit_callbacks):
    """A signed case changes only by a radiologist's written addendum on the case, never by a
    network upload, whoever's token sends it."""
    from apps.dicomnet.intake import CASE_SIGNED

    case, _, later = _first_of_two_stored(north, north.radiologist, django_capture_on_commit_callbacks)
    _read_and_sign(case, north.radiologist)
    with django_capture_on_commit_callbacks(execute=False):
        response = _post(_client(north.radiologist), [("application/dicom", later)])
    assert response.status_code == 409, response.content
    (failed,) = response.json()[FAILED]["Value"]
    assert failed[REASON]["Value"][0] == CASE_SIGNED
    assert unpack_received() == []
    assert not case.addenda.exists()


def test_a_received_instance_is_named_by_its_numbers_never_by_its_original_uid(
    north, django_capture_on_commit_callbacks
):
    """The SOP Instance UID is an original identifier: kept in DicomInstance only, never the
    scan's name shown in the API and on the pages."""
    first, second = dicomdata.training_series(2, patient_id=north.patient.mrn, study_uid=STUDY)
    numbered = dcmread(DicomBytesIO(second))
    numbered.SeriesNumber = 7
    second = dicomdata.to_bytes(numbered)
    with django_capture_on_commit_callbacks(execute=False):
        response = _post(_client(north.staff), [("application/dicom", first), ("application/dicom", second)])
    assert response.status_code == 200
    unpack_received()
    scans = Scan.objects.filter(case__dicom_study__study_instance_uid=STUDY).order_by("slice_order")
    assert [s.original_filename for s in scans] == ["instance-1.dcm", "series-7-instance-2.dcm"]
    client = APIClient()
    client.force_authenticate(north.staff)
    shown = client.get(reverse("api:scan-detail", args=[scans[0].pk])).content.decode()
    assert "instance-1.dcm" in shown
    assert _uid(first) not in shown
    assert STUDY not in shown


def test_the_instances_of_one_received_study_make_one_progress_line_on_the_case(
    north, client, django_capture_on_commit_callbacks
):
    """Each received instance is a study upload of its own; the case shows the study once."""
    slices = dicomdata.training_series(3, patient_id=north.patient.mrn, study_uid=STUDY)
    with django_capture_on_commit_callbacks(execute=False):
        assert _post(_client(north.staff), [("application/dicom", data) for data in slices]).status_code == 200
    case = DicomStudy.objects.get(study_instance_uid=STUDY).case
    client.force_login(north.staff)
    url = reverse("case_detail", kwargs={"case_id": case.pk})

    def progress_lines() -> list[str]:
        page = client.get(url).content.decode()
        return [line.split(">", 1)[1].split("<", 1)[0] for line in page.split('class="study-progress"')[1:]]

    assert progress_lines() == ["Study of 3 slice(s) waiting to be unpacked."]
    unpack_received()
    assert progress_lines() == ["0 of 3 slices analysed."]
    for scan in Scan.objects.filter(case=case):
        finish_scan(scan, "glioma", 0.8)
    assert progress_lines() == ["3 of 3 slices analysed."]
