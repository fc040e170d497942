"""Results back into the PACS (issue 18): the outbox builds the SR, the secondary captures and
the PDF from the database and sends them by C-STORE to the study's node (a real pynetdicom
SCP here; Orthanc in tests/e2e), retrying while it is down, never twice."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone
from pydicom.uid import SecondaryCaptureImageStorage

from apps.cases.services import case_sign
from apps.dicomnet.intake import instance_receive
from apps.dicomnet.models import DicomStudy, OutboxItem, OutboxState
from apps.dicomnet.outbox import outbox_due, outbox_plan, outbox_send
from apps.dicomnet.results import ENCAPSULATED_PDF_STORAGE, UNVERIFIED_LINE, burnt_in, capture_lines
from apps.dicomnet.services import node_create
from apps.scans.models import Scan
from apps.scans.services import scan_review
from tests.testkit import dicom as dicomdata
from tests.testkit.data import finish_scan, reject_scan, unpack_received
from tests.testkit.dicomnet import StoreScp, dciodvfy, free_port
from tests.testkit.documents import assert_shows

STUDY = "1.2.826.0.1.3680043.8.498.9001"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture
def pacs_port() -> int:
    return free_port()


@pytest.fixture
def received_study(north, pacs_port, django_capture_on_commit_callbacks) -> DicomStudy:
    """Three slices received from the node, two analysed, one refused by the OOD gate."""
    node = node_create(created_by=north.admin, ae_title="TEST_PACS", host="127.0.0.1", port=pacs_port,
                       send_results=True)  # fmt: skip
    slices = dicomdata.training_series(3, patient_id="PACS-PAT-1", study_uid=STUDY)
    with django_capture_on_commit_callbacks(execute=False):
        for data in slices:
            assert instance_receive(data=data, node=node, actor=node.service_user, source="test").ok
    assert not outbox_plan()  # not even unpacked yet: nothing to send
    unpack_received()
    study = DicomStudy.objects.get(study_instance_uid=STUDY)
    scans = list(Scan.objects.filter(case=study.case).order_by("slice_order"))
    assert not outbox_plan()  # nothing analysed yet: nothing to send
    finish_scan(scans[0], "glioma", 0.82)
    assert not outbox_plan()  # the study is not finished
    finish_scan(scans[1], "notumor", 0.91)
    reject_scan(scans[2])
    return study


def _send_all() -> list[OutboxItem]:
    return [outbox_send(item_id) for item_id in outbox_due()]


def test_sr_and_secondary_captures_go_back_into_the_same_study_and_are_dciodvfy_clean(received_study, pacs_port):
    added = outbox_plan()
    assert len(added) == 2
    assert outbox_plan() == []  # planned once
    with StoreScp(pacs_port) as pacs:
        sent = _send_all()
    assert {item.state for item in sent} == {OutboxState.SENT}
    sr = [ds for ds in pacs.received if ds.SOPClassUID == COMPREHENSIVE_3D_SR]
    sc = [ds for ds in pacs.received if ds.SOPClassUID == SecondaryCaptureImageStorage]
    assert len(sr) == 1
    assert len(sc) == 2
    for ds in pacs.received:
        # The original study and patient, not the de-identified ones the files are stored with.
        assert ds.StudyInstanceUID == STUDY
        assert ds.PatientID == "PACS-PAT-1"
        errors, output = dciodvfy(ds)
        assert not errors, output
    assert len({ds.SeriesInstanceUID for ds in sc}) == 1
    assert sc[0].SeriesInstanceUID != sr[0].SeriesInstanceUID
    assert sr[0].VerificationFlag == "UNVERIFIED"
    assert sr[0].CompletionFlag == "COMPLETE"

    assert_shows(
        str(sr[0]), "Glioma", "393563007", "No tumour class", "Out of distribution, not validated",
        "Calibrated probability of finding", "0.82", "AI output, unverified", "pixel-test-1",
    )  # fmt: skip
    referenced = {
        item.ReferencedSOPInstanceUID for item in _walk(sr[0]) if "ReferencedSOPInstanceUID" in item
    }
    originals = {f"{STUDY}.1.{n}" for n in (1, 2, 3)}
    assert originals <= referenced  # every source instance, by its original UID
    assert UNVERIFIED_LINE in sc[0].ImageComments
    assert sc[0].BurnedInAnnotation == "YES"
    # The line is burnt into the pixels: the band above the overlay holds bright text.
    assert sc[0].pixel_array[:20].max() > 200

    with StoreScp(pacs_port) as pacs:
        assert _send_all() == []  # sent rows are never sent again
    assert pacs.received == []


def _walk(ds):
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                yield item
                yield from _walk(item)


def test_pacs_down_is_retried_with_back_off_and_nothing_is_lost_or_sent_twice(received_study, pacs_port, settings):
    settings.DICOM_NETWORK_TIMEOUT = 2
    outbox_plan()
    failed = _send_all()  # nobody listens on the node's port
    assert {item.state for item in failed} == {OutboxState.RETRYING}
    assert all(item.attempts == 1 and "No association" in item.last_error for item in failed)
    assert all(item.next_attempt_at > timezone.now() + timedelta(seconds=20) for item in failed)
    assert outbox_due() == []  # waits for its back-off

    OutboxItem.objects.update(next_attempt_at=timezone.now())
    again = _send_all()
    assert all(item.attempts == 2 for item in again)
    assert all(item.next_attempt_at > timezone.now() + timedelta(seconds=50) for item in again)  # doubled

    OutboxItem.objects.update(next_attempt_at=timezone.now())
    with StoreScp(pacs_port) as pacs:
        sent = _send_all()
    assert {item.state for item in sent} == {OutboxState.SENT}
    assert len(pacs.received) == 3  # SR + two captures, once each


def test_signing_sends_a_verified_sr_and_the_report_as_encapsulated_pdf(received_study, north, pacs_port):
    outbox_plan()
    with StoreScp(pacs_port):
        _send_all()
    case = received_study.case
    for scan in Scan.objects.filter(case=case, status="done"):
        scan_review(scan=scan, reviewer=north.radiologist, agrees=True)
    case_sign(case=case, signer=north.radiologist, conclusion="Left frontal glioma suspected.")
    assert len(outbox_plan()) == 2
    with StoreScp(pacs_port) as pacs:
        _send_all()
    (sr,) = [ds for ds in pacs.received if ds.SOPClassUID == COMPREHENSIVE_3D_SR]
    (pdf,) = [ds for ds in pacs.received if ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE]
    assert sr.VerificationFlag == "VERIFIED"
    assert sr.VerifyingObserverSequence
    assert "Left frontal glioma suspected." in [item.get("TextValue") for item in _walk(sr)]
    assert pdf.EncapsulatedDocument.startswith(b"%PDF")
    assert pdf.StudyInstanceUID == STUDY
    for ds in (sr, pdf):
        errors, output = dciodvfy(ds)
        assert not errors, output


def test_outbox_state_is_in_the_api_and_on_the_case_page(received_study, north, client, pacs_port):
    outbox_plan()
    client.force_login(north.staff)
    rows = client.get(reverse("api:case-dicom-outbox", kwargs={"case_id": received_study.case_id})).json()
    assert sorted((r["kind"], r["state"], r["node"]) for r in rows) == [
        ("sc", "pending", "TEST_PACS"), ("sr", "pending", "TEST_PACS"),
    ]  # fmt: skip
    page = client.get(reverse("case_detail", kwargs={"case_id": received_study.case_id})).content.decode()
    assert "Results sent to the PACS" in page
    assert "Waiting to be sent" in page


def test_a_frame_of_a_multi_frame_original_is_referenced_by_its_frame_number(
    north, pacs_port, django_capture_on_commit_callbacks
):
    import numpy as np

    node = node_create(created_by=north.admin, ae_title="MF_PACS", host="127.0.0.1", port=pacs_port,
                       send_results=True)  # fmt: skip
    grays = [dicomdata.gray_from_jpeg(jpeg) for jpeg in dicomdata.training_jpegs(2)]
    side = min(min(g.shape) for g in grays)
    frames = np.stack([g[:side, :side] for g in grays]).astype(np.uint16) << 8
    identity = dicomdata.Identity(patient_id="MF-1", study_uid=STUDY + ".4", series_uid=STUDY + ".4.1")
    ds = dicomdata.base_dataset(frames, bits_stored=16, identity=identity, window=(127.5 * 256 + 0.5, 255.0 * 256 + 1))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = dicomdata.ENHANCED_MR_IMAGE_STORAGE
    data = dicomdata.to_bytes(ds)
    with django_capture_on_commit_callbacks(execute=False):
        received = instance_receive(data=data, node=node, actor=node.service_user, source="test")
    assert received.ok
    assert received.scans == 2
    unpack_received()
    for scan in Scan.objects.filter(case_id=received.case_id):
        finish_scan(scan, "pituitary", 0.66)
    outbox_plan()
    with StoreScp(pacs_port) as pacs:
        _send_all()
    (sr,) = [ds for ds in pacs.received if ds.SOPClassUID == COMPREHENSIVE_3D_SR]
    frames_referenced = sorted(
        int(item.ReferencedFrameNumber) for item in _walk(sr) if "ReferencedFrameNumber" in item
    )
    assert frames_referenced == [1, 2]
    errors, output = dciodvfy(sr)
    assert not errors, output


def test_the_tasks_send_what_is_due_and_a_failed_send_publishes_itself_again(
    received_study, pacs_port, maintenance_broker, settings
):
    from apps.dicomnet.tasks import outbox_sweep, send_outbox_item

    settings.DICOM_NETWORK_TIMEOUT = 2
    assert outbox_sweep.apply().get() == 2  # planned and published, on the maintenance queue
    published = maintenance_broker()
    assert sorted(t.task for t in published) == ["apps.dicomnet.tasks.send_outbox_item"] * 2
    item_id = published[0].args[0]
    assert send_outbox_item.apply(args=[item_id]).get() == OutboxState.RETRYING  # nobody listens
    (again,) = maintenance_broker()
    assert again.task == "apps.dicomnet.tasks.send_outbox_item"
    assert again.args == [item_id]
    OutboxItem.objects.filter(pk=item_id).update(next_attempt_at=timezone.now())
    with StoreScp(pacs_port) as pacs:
        assert send_outbox_item.apply(args=[item_id]).get() == OutboxState.SENT
        assert send_outbox_item.apply(args=[item_id]).get() == "skipped"  # never twice
    assert len(pacs.received) >= 1


def test_one_sr_per_analysed_series(north, pacs_port, django_capture_on_commit_callbacks):
    node = node_create(created_by=north.admin, ae_title="TWO_SERIES", host="127.0.0.1", port=pacs_port,
                       send_results=True)  # fmt: skip
    study_uid = STUDY + ".2"
    jpegs = dicomdata.training_jpegs(3)
    with django_capture_on_commit_callbacks(execute=False):
        for n, jpeg in enumerate(jpegs):
            series = f"{study_uid}.{1 + n // 2}"  # slices 1-2 in series .1, slice 3 in series .2
            identity = dicomdata.Identity(patient_id="TWO-1", study_uid=study_uid, series_uid=series, instance=n + 1)
            data = dicomdata.mr_slice_from_jpeg(jpeg, identity=identity)
            assert instance_receive(data=data, node=node, actor=node.service_user, source="test").ok
    unpack_received()
    for scan in Scan.objects.filter(case__dicom_study__study_instance_uid=study_uid):
        finish_scan(scan, "meningioma", 0.6)
    outbox_plan()
    with StoreScp(pacs_port) as pacs:
        _send_all()
    reports = [ds for ds in pacs.received if ds.SOPClassUID == COMPREHENSIVE_3D_SR]
    reports.sort(key=lambda ds: ds.InstanceNumber)
    assert len(reports) == 2
    assert len({ds.SeriesInstanceUID for ds in reports}) == 1  # one SR series
    referenced = [
        sorted(i.ReferencedSOPInstanceUID for i in _walk(ds) if "ReferencedSOPInstanceUID" in i and
               i.ReferencedSOPInstanceUID.startswith(study_uid))
        for ds in reports
    ]  # fmt: skip
    assert {u.rsplit(".", 1)[0] for u in referenced[0]} == {f"{study_uid}.1"}
    assert {u.rsplit(".", 1)[0] for u in referenced[1]} == {f"{study_uid}.2"}


def test_an_instance_whose_unpacking_failed_is_listed_failed_left_out_and_taken_again(
    north, pacs_port, client, settings, django_capture_on_commit_callbacks
):
    from pathlib import Path

    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO

    from apps.dicomnet.models import DicomInstance
    from apps.scans.models import StudyUpload

    node = node_create(created_by=north.admin, ae_title="FAIL_PACS", host="127.0.0.1", port=pacs_port,
                       send_results=True)  # fmt: skip
    slices = dicomdata.training_series(2, patient_id="FAIL-1", study_uid=STUDY + ".7")
    good_uid, broken_uid = (dcmread(DicomBytesIO(data)).SOPInstanceUID for data in slices)
    with django_capture_on_commit_callbacks(execute=False):
        for data in slices:
            assert instance_receive(data=data, node=node, actor=node.service_user, source="test").ok
    # The second original is damaged in storage before the worker gets to it: its job fails.
    broken = StudyUpload.objects.get(dicom_instances__sop_instance_uid=broken_uid)
    Path(settings.MEDIA_ROOT, broken.sources[0]["path"]).write_bytes(slices[1][:3000])
    assert [study.status for study in unpack_received()] == ["unpacked", "failed"]
    study = DicomStudy.objects.get(study_instance_uid=STUDY + ".7")
    (scan,) = Scan.objects.filter(case=study.case)
    assert DicomInstance.objects.get(sop_instance_uid=good_uid).scan == scan
    assert DicomInstance.objects.get(sop_instance_uid=broken_uid).scan is None

    client.force_login(north.staff)
    url = reverse("api:case-dicom-outbox", kwargs={"case_id": study.case_id})
    (failed,) = client.get(url).json()
    assert (failed["kind"], failed["state"], failed["node"], failed["id"]) == ("instance", "failed", "FAIL_PACS", None)
    assert broken_uid in failed["last_error"]
    assert "No MR DICOM image could be read" in failed["last_error"]
    page = client.get(reverse("case_detail", kwargs={"case_id": study.case_id})).content.decode()
    assert "Failed: not unpacked, not reported on" in page

    finish_scan(scan, "glioma", 0.7)
    assert len(outbox_plan()) == 2  # the failed instance does not hold the study's results back
    with StoreScp(pacs_port) as pacs:
        _send_all()
    (sr,) = [ds for ds in pacs.received if ds.SOPClassUID == COMPREHENSIVE_3D_SR]
    referenced = {i.ReferencedSOPInstanceUID for i in _walk(sr) if "ReferencedSOPInstanceUID" in i}
    assert good_uid in referenced
    assert broken_uid not in referenced
    assert len([ds for ds in pacs.received if ds.SOPClassUID == SecondaryCaptureImageStorage]) == 1

    # The PACS sends the failed instance again: taken as new, unpacked, linked.
    with django_capture_on_commit_callbacks(execute=False):
        again = instance_receive(data=slices[1], node=node, actor=node.service_user, source="test")
    assert again.ok
    assert not again.duplicate
    assert [study.status for study in unpack_received()] == ["unpacked"]
    assert DicomInstance.objects.get(sop_instance_uid=broken_uid).scan.case == study.case
    assert [row["kind"] for row in client.get(url).json()] == ["sr", "sc"]


def test_a_removed_scan_is_left_out_of_the_sr_and_the_captures(received_study, north, pacs_port):
    from apps.scans.removal import scan_remove

    done = Scan.objects.filter(case=received_study.case, status="done").order_by("slice_order")
    removed = scan_remove(scan=done[1], by=north.staff, reason="Another patient's slice")
    removed_uid = removed.dicom_source.sop_instance_uid
    assert len(outbox_plan()) == 2
    with StoreScp(pacs_port) as pacs:
        _send_all()
    (sr,) = [ds for ds in pacs.received if ds.SOPClassUID == COMPREHENSIVE_3D_SR]
    referenced = {i.ReferencedSOPInstanceUID for i in _walk(sr) if "ReferencedSOPInstanceUID" in i}
    assert removed_uid not in referenced
    assert f"{STUDY}.1.1" in referenced
    assert "No tumour class" not in str(sr)  # the removed slice's finding
    captures = [ds for ds in pacs.received if ds.SOPClassUID == SecondaryCaptureImageStorage]
    assert len(captures) == 1  # the one analysed slice left


def test_results_wait_until_the_study_is_stable_so_a_later_series_is_reported_on(
    north, pacs_port, settings, django_capture_on_commit_callbacks
):
    """A scanner sends series by series: the first is analysed before the second arrives."""
    from apps.dicomnet.models import DicomInstance

    settings.DICOM_STUDY_STABLE_SECONDS = 60
    node = node_create(created_by=north.admin, ae_title="SERIES_PACS", host="127.0.0.1", port=pacs_port,
                       send_results=True)  # fmt: skip
    study_uid = STUDY + ".3"
    jpegs = dicomdata.training_jpegs(2)

    def send_series(n: int) -> None:
        identity = dicomdata.Identity(patient_id="SER-1", study_uid=study_uid, series_uid=f"{study_uid}.{n}",
                                      instance=n)  # fmt: skip
        with django_capture_on_commit_callbacks(execute=False):
            data = dicomdata.mr_slice_from_jpeg(jpegs[n - 1], identity=identity)
            assert instance_receive(data=data, node=node, actor=node.service_user, source="test").ok
        unpack_received()
        for scan in Scan.objects.filter(case__dicom_study__study_instance_uid=study_uid, status="queued"):
            finish_scan(scan, "meningioma", 0.6)

    send_series(1)
    assert outbox_plan() == []  # nothing queued, but the study arrived a moment ago
    DicomInstance.objects.update(received_at=timezone.now() - timedelta(seconds=30))
    send_series(2)
    assert outbox_plan() == []  # the second series restarted the wait
    DicomInstance.objects.update(received_at=timezone.now() - timedelta(seconds=61))
    assert len(outbox_plan()) == 2
    with StoreScp(pacs_port) as pacs:
        _send_all()
    reports = [ds for ds in pacs.received if ds.SOPClassUID == COMPREHENSIVE_3D_SR]
    assert len(reports) == 2  # one per series: both are in
    assert len([ds for ds in pacs.received if ds.SOPClassUID == SecondaryCaptureImageStorage]) == 2


def test_a_held_scan_holds_the_study_results_back_until_a_person_decides(
    received_study, north, django_capture_on_commit_callbacks
):
    from apps.scans.holds import scan_hold, scan_hold_discard
    from apps.scans.models import ScanStatus
    from apps.scans.services import scan_claim

    # A fourth slice of the study is held by the worker: text burnt into its pixels.
    node = received_study.node
    late = dicomdata.training_series(4, patient_id="PACS-PAT-1", study_uid=STUDY)[3]
    with django_capture_on_commit_callbacks(execute=False):
        assert instance_receive(data=late, node=node, actor=node.service_user, source="test").ok
    unpack_received()
    held = Scan.objects.get(case=received_study.case, status=ScanStatus.QUEUED)
    assert scan_hold(scan=scan_claim(scan_id=held.pk))
    assert outbox_plan() == []  # the held slice waits for a person
    scan_hold_discard(scan=held, by=north.radiologist)
    assert len(outbox_plan()) == 2


def test_a_not_validated_or_unsure_slice_says_so_in_the_sr_and_on_its_capture(received_study, pacs_port):
    """Issue 16 on the PACS surface: a "No tumour" on a sequence the model is not validated for
    is never sent as a bare, confident label (the SR's sequence state, the capture's band)."""
    from apps.scans.models import Prediction

    scans = list(Scan.objects.filter(case=received_study.case).order_by("slice_order"))
    Scan.objects.filter(pk=scans[1].pk).update(sequence="t2", sequence_source="dicom")
    Prediction.objects.filter(scan=scans[1]).update(validated=False)
    outbox_plan()
    with StoreScp(pacs_port) as pacs:
        _send_all()
    (sr,) = [ds for ds in pacs.received if ds.SOPClassUID == COMPREHENSIVE_3D_SR]
    assert_shows(
        str(sr), "Not validated for this MRI sequence", "MRI sequence unknown: validation not known",
        "Accepted by the out-of-distribution gate",
    )  # fmt: skip
    assert "Within the validated distribution" not in str(sr)
    errors, output = dciodvfy(sr)
    assert not errors, output
    notumor = Prediction.objects.get(scan=scans[1])
    assert capture_lines(notumor) == [UNVERIFIED_LINE, "No tumour 91.0%", "NOT VALIDATED FOR T2"]
    assert capture_lines(Prediction.objects.get(scan=scans[0])) == [UNVERIFIED_LINE, "Glioma 82.0%"]
    unsure = Prediction(label="glioma", probabilities={"glioma": 0.6, "notumor": 0.4}, validated=True)
    assert capture_lines(unsure)[2:] == ["LOW CONFIDENCE"]
    # Those lines are what is burnt in: the T2 slice's capture is its overlay under a three-line band.
    captures = sorted(
        (ds for ds in pacs.received if ds.SOPClassUID == SecondaryCaptureImageStorage), key=lambda ds: ds.InstanceNumber
    )
    overlay = notumor.overlay.open("rb").read()
    np.testing.assert_array_equal(captures[1].pixel_array, burnt_in(overlay, capture_lines(notumor)))
    assert captures[1].Rows > burnt_in(overlay, capture_lines(notumor)[:2]).shape[0]


def test_a_warning_on_a_narrow_capture_is_wrapped_not_cut_off():
    from apps.dicomnet.results import _font, band_lines

    lines = [UNVERIFIED_LINE, "No tumour 91.0%", "NOT VALIDATED FOR T1 POST-CONTRAST"]
    assert band_lines(lines, 512)[1] == lines  # room enough: as written
    size, fitted = band_lines(lines, 200)
    assert len(fitted) > len(lines)
    assert " ".join(fitted).split() == " ".join(lines).split()  # every word kept, in order
    assert all(_font(size).getlength(line) <= 200 - 12 for line in fitted)
