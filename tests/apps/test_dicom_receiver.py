"""The C-STORE SCP (issue 18): a real pynetdicom server on a free port, fed by a real
pynetdicom SCU, storing through the real upload service (each instance one study upload; the
worker's unpacking job, run here with `unpack_received`, makes the de-identified, queued scans)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from apps.dicomnet.models import DicomInstance, DicomNode, DicomStudy
from apps.dicomnet.receiver import serve
from apps.dicomnet.services import node_create
from apps.patients.models import Patient
from apps.scans.models import Scan
from tests.testkit import dicom as dicomdata
from tests.testkit.data import make_world, unpack_received

pytestmark = pytest.mark.django_db(transaction=True)  # the server's threads see committed rows only

STUDY = "1.2.826.0.1.3680043.8.498.7001"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def receiver(settings) -> Iterator[int]:
    port = _free_port()
    server = serve(address="127.0.0.1", port=port, block=False)
    yield port
    server.shutdown()


@pytest.fixture
def north(django_capture_on_commit_callbacks):
    world = make_world("north", django_capture_on_commit_callbacks)
    node_create(created_by=world.admin, ae_title="NORTH_PACS", host="127.0.0.1", port=4242, send_results=True)
    return world


def _send(port: int, items: list, calling: str = "NORTH_PACS", contexts=(MRImageStorage, CTImageStorage)):
    """C-STORE each item (a Dataset, or a path sent byte for byte); the statuses, or None when
    the association was refused."""
    ae = AE(ae_title=calling)
    for context in contexts:
        ae.add_requested_context(context)
    assoc = ae.associate("127.0.0.1", port, ae_title="CLINIC_AI")
    if not assoc.is_established:
        return None
    try:
        return [assoc.send_c_store(item) for item in items]
    finally:
        assoc.release()


def _datasets(slices: list[bytes]):
    return [dcmread(DicomBytesIO(data)) for data in slices]


def test_unknown_and_deactivated_ae_titles_are_rejected(north, receiver):
    assert _send(receiver, _datasets(dicomdata.training_series(1)), calling="STRANGER") is None
    node = DicomNode.objects.get(ae_title="NORTH_PACS")
    node.is_active = False
    node.save()
    assert _send(receiver, _datasets(dicomdata.training_series(1))) is None
    assert not DicomStudy.objects.exists()


def test_an_mr_series_becomes_one_case_of_the_clinics_patient_and_resending_adds_nothing(north, receiver):
    slices = dicomdata.training_series(3, patient_id=north.patient.mrn, study_uid=STUDY)
    statuses = _send(receiver, _datasets(slices))
    assert [s.Status for s in statuses] == [0, 0, 0]
    study = DicomStudy.objects.get(study_instance_uid=STUDY)
    # Received, not decoded: the frames are known at once, their scans come from the worker's job.
    assert DicomInstance.objects.filter(study=study, scan__isnull=True).count() == 3
    assert not Scan.objects.filter(case=study.case).exists()
    assert len(unpack_received()) == 3  # one study upload per instance
    assert not DicomInstance.objects.filter(study=study, scan__isnull=True).exists()  # each linked to its scan
    assert study.clinic == north.clinic
    assert study.case.patient == north.patient
    assert study.node.ae_title == "NORTH_PACS"
    assert study.patient_id == north.patient.mrn
    scans = Scan.objects.filter(case=study.case).order_by("slice_order")
    assert scans.count() == 3
    assert {s.status for s in scans} == {"queued"}
    # Stored files are de-identified: the original UIDs and patient are only in DicomStudy/DicomInstance.
    with scans[0].dicom.open("rb") as handle:
        stored = dcmread(handle)
    assert stored.StudyInstanceUID != STUDY
    assert stored.PatientID != north.patient.mrn
    assert sorted(DicomInstance.objects.values_list("sop_instance_uid", flat=True)) == sorted(
        dcmread(DicomBytesIO(s)).SOPInstanceUID for s in slices
    )

    again = _send(receiver, _datasets(slices))  # the PACS sends the study again
    assert [s.Status for s in again] == [0, 0, 0]
    assert unpack_received() == []  # recognised on arrival: nothing new to unpack
    assert Scan.objects.filter(case=study.case).count() == 3
    assert DicomStudy.objects.count() == 1


def test_an_unknown_patient_is_created_from_the_patient_module(north, receiver):
    (data,) = dicomdata.training_series(1, patient_id="NEW-PAT-9", study_uid=STUDY)
    assert _send(receiver, _datasets([data]))[0].Status == 0
    patient = Patient.objects.get(clinic=north.clinic, mrn="NEW-PAT-9")
    assert patient.name == "JANE DOE"
    assert str(patient.date_of_birth) == "1961-04-12"
    assert DicomStudy.objects.get().case.patient == patient


def test_non_mr_and_corrupt_instances_get_a_failure_status_and_nothing_is_stored(north, receiver, tmp_path: Path):
    ct = dcmread(DicomBytesIO(dicomdata.training_series(1, study_uid=STUDY)[0]))
    ct.Modality, ct.SOPClassUID = "CT", CTImageStorage
    ct.file_meta.MediaStorageSOPClassUID = CTImageStorage
    (good,) = dicomdata.training_series(1, study_uid=STUDY + ".2")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good[: len(good) // 2])
    before = Scan.objects.count()

    ct_status, corrupt_status = _send(receiver, [ct, truncated])
    assert ct_status.Status == 0xC000
    assert "Modality CT" in ct_status.ErrorComment
    assert corrupt_status.Status & 0xF000 in (0xA000, 0xC000)  # a failure, never a warning or success
    assert Scan.objects.count() == before
    assert not DicomStudy.objects.exists()


def test_a_second_clinics_node_sending_the_same_study_never_reaches_the_first_clinic(
    north, receiver, django_capture_on_commit_callbacks
):
    south = make_world("south", django_capture_on_commit_callbacks)
    node_create(created_by=south.admin, ae_title="SOUTH_PACS", host="127.0.0.1", port=4243)
    slices = dicomdata.training_series(2, patient_id=north.patient.mrn, study_uid=STUDY)
    assert [s.Status for s in _send(receiver, _datasets(slices))] == [0, 0]
    assert [s.Status for s in _send(receiver, _datasets(slices), calling="SOUTH_PACS")] == [0, 0]
    unpack_received()
    north_study, south_study = (DicomStudy.objects.get(clinic=w.clinic) for w in (north, south))
    assert north_study.case != south_study.case
    assert south_study.case.clinic == south.clinic
    assert south_study.case.patient.clinic == south.clinic
    assert south_study.case.patient != north.patient  # a new patient of south's, with the same MRN
    assert Scan.objects.filter(case=north_study.case).count() == 2
    assert Scan.objects.filter(case=south_study.case).count() == 2


def test_an_association_that_stops_mid_study_keeps_what_arrived_and_the_rest_can_be_resent(north, receiver):
    slices = _datasets(dicomdata.training_series(3, study_uid=STUDY))
    ae = AE(ae_title="NORTH_PACS")
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate("127.0.0.1", receiver, ae_title="CLINIC_AI")
    assert assoc.is_established
    assert assoc.send_c_store(slices[0]).Status == 0
    assoc.abort()  # the PACS drops the link after the first instance
    unpack_received()
    study = DicomStudy.objects.get(study_instance_uid=STUDY)
    assert list(Scan.objects.filter(case=study.case).values_list("status", flat=True)) == ["queued"]  # analysed

    assert [s.Status for s in _send(receiver, slices)] == [0, 0, 0]  # the whole series again
    assert len(unpack_received()) == 2
    assert Scan.objects.filter(case=study.case).count() == 3


def test_compressed_transfer_syntaxes_are_accepted_without_transcoding(north, receiver):
    from pydicom.uid import JPEGLSLossless

    (data,) = dicomdata.training_series(1, study_uid=STUDY, key="jpeg-ls-lossless")
    ae = AE(ae_title="NORTH_PACS")
    ae.add_requested_context(MRImageStorage, [JPEGLSLossless])  # only the compressed syntax
    assoc = ae.associate("127.0.0.1", receiver, ae_title="CLINIC_AI")
    assert assoc.is_established
    try:
        assert assoc.send_c_store(dcmread(DicomBytesIO(data))).Status == 0
    finally:
        assoc.release()
    unpack_received()  # decoded by the worker's job, not by the receiver
    assert Scan.objects.filter(case__dicom_study__study_instance_uid=STUDY).count() == 1


def test_a_copy_losing_the_race_to_another_association_leaves_no_original_behind(
    north, monkeypatch, settings, django_capture_on_commit_callbacks
):
    from pathlib import Path

    from apps.dicomnet import intake
    from apps.scans.models import StudyUpload

    node = DicomNode.objects.get(ae_title="NORTH_PACS")
    (data,) = dicomdata.training_series(1, study_uid=STUDY)
    uid = dcmread(DicomBytesIO(data)).SOPInstanceUID
    real_submit = intake._submit

    def submit_while_another_association_stores_it(**kwargs):
        received = real_submit(**kwargs)  # our original is in storage now
        # The other association's frame row, committed between our duplicate check and our insert.
        DicomInstance.objects.create(study=DicomStudy.objects.get(study_instance_uid=STUDY), sop_instance_uid=uid,
                                     sop_class_uid=MRImageStorage, series_instance_uid=STUDY + ".1")  # fmt: skip
        return received

    monkeypatch.setattr(intake, "_submit", submit_while_another_association_stores_it)
    with django_capture_on_commit_callbacks(execute=False):
        answer = intake.instance_receive(data=data, node=node, actor=node.service_user, source="test")
    assert answer.ok
    assert answer.duplicate  # the other copy is the one kept
    assert not StudyUpload.objects.exists()
    assert not list(Path(settings.MEDIA_ROOT).glob("originals/**/*.bin"))  # PHI not left in storage


def test_an_association_from_another_host_than_the_nodes_is_rejected_and_audited(north, receiver):
    """The AE title is no secret: an association must also come from the node's registered host."""
    from apps.audit.models import AuditAction, AuditEvent

    node = DicomNode.objects.get(ae_title="NORTH_PACS")
    node.host = "10.20.30.40"  # the PACS; the association below comes from 127.0.0.1
    node.save()
    assert _send(receiver, _datasets(dicomdata.training_series(1, study_uid=STUDY))) is None
    assert not DicomStudy.objects.exists()
    event = AuditEvent.objects.get(action=AuditAction.LOGIN_FAILED, actor_username="NORTH_PACS")
    assert event.outcome == "failure"
    assert event.clinic_id == north.clinic.pk  # in the node's clinic's audit log
    assert (event.object_type, event.object_id) == ("dicom_node", str(node.pk))
    assert "127.0.0.1" in event.detail
    assert "not from the node's host 10.20.30.40" in event.detail

    node.host = "localhost"  # a host name is resolved: it stands for 127.0.0.1
    node.save()
    statuses = _send(receiver, _datasets(dicomdata.training_series(1, study_uid=STUDY)))
    assert [s.Status for s in statuses] == [0]
    assert DicomStudy.objects.get().node == node
