"""The platform inside the imaging network, end to end (issue 18): a real Orthanc (Debian's,
started here) as the PACS, dcmtk's storescu as the scanner, the receiver as its own process
(`manage.py dicom_receiver`), a real worker running the shipped model, Redis, and dciodvfy
checking every object that comes back into Orthanc."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.db import connection
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO

from apps.accounts.models import Role
from apps.accounts.services import clinic_create, user_create
from apps.cases.services import case_sign
from apps.dicomnet.models import DicomStudy, OutboxItem, OutboxState
from apps.dicomnet.services import node_create
from apps.dicomnet.tasks import outbox_sweep
from apps.scans.models import Scan, ScanStatus, StudyUpload
from apps.scans.services import scan_review
from tests.testkit import dicom as dicomdata
from tests.testkit.data import PASSWORD
from tests.testkit.dicomnet import dciodvfy, free_port
from tests.testkit.orthanc import Orthanc
from tests.testkit.processes import ROOT, MediaStore, Worker, worker_env

STUDY = "1.2.826.0.1.3680043.8.498.18001"
SR, SC, PDF = "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.104.1"
WAIT_S = 420.0


@pytest.fixture
def receiver_port(transactional_db, redis_url: str, media_store: MediaStore, tmp_path: Path) -> Iterator[int]:
    """`manage.py dicom_receiver` as its own process on the test database, media and Redis."""
    port = free_port()
    env = worker_env(redis_url=redis_url, database=connection.settings_dict, media=media_store.env())
    log = tmp_path / "receiver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "dicom_receiver", "--address", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the receiver did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.3)
    yield port
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def orthanc(receiver_port: int, tmp_path: Path) -> Iterator[Orthanc]:
    (tmp_path / "orthanc").mkdir()
    try:
        pacs = Orthanc(tmp_path / "orthanc", modalities={"clinic": ("CLINIC_AI", "127.0.0.1", receiver_port)})
    except RuntimeError as exc:
        pytest.fail(str(exc))
    pacs.start()
    yield pacs
    pacs.stop()


@pytest.fixture(autouse=True)
def _tools() -> None:
    for tool in ("storescu", "dciodvfy", "Orthanc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (requirements/system.txt: orthanc, dcmtk, dicom3tools)")


def _wait(condition, what: str, worker: Worker, timeout: float = WAIT_S, every=None):
    deadline = time.monotonic() + timeout
    last_nudge = 0.0
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if every is not None and time.monotonic() - last_nudge > 10:
            every()
            last_nudge = time.monotonic()
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}\n--- worker log ---\n{worker.log_tail()}")


def _admin(name: str):
    clinic = clinic_create(name=name)
    return user_create(clinic=clinic, username=f"{name.lower()}-admin", password=PASSWORD, role=Role.CLINIC_ADMIN)


def _storescu(port: int, calling: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("storescu") or "storescu", "-aet", calling, "-aec", "CLINIC_AI", "127.0.0.1", str(port),
         *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _study_finished(case_id: int) -> bool:
    statuses = list(Scan.objects.filter(case_id=case_id).values_list("status", flat=True))
    return bool(statuses) and all(s in (ScanStatus.DONE, ScanStatus.REJECTED, ScanStatus.FAILED) for s in statuses)


def _returned(orthanc: Orthanc, sop_class: str) -> list[dict]:
    study_id = orthanc.study_id(STUDY)
    return [i for i in orthanc.instances(study_id) if i["tags"].get("SOPClassUID") == sop_class] if study_id else []


def _check_clean(instances: list[dict]) -> None:
    for instance in instances:
        errors, output = dciodvfy(dcmread(DicomBytesIO(instance["file"])))
        assert not errors, output


def test_orthanc_round_trip_storescu_second_clinic_and_outbox_across_a_pacs_restart(
    orthanc: Orthanc, receiver_port: int, worker: Worker, tmp_path: Path
) -> None:
    north_admin = _admin("North")
    node = node_create(created_by=north_admin, ae_title="ORTHANC", host="127.0.0.1", port=orthanc.dicom_port,
                       send_results=True)  # fmt: skip
    slices = dicomdata.training_series(2, patient_id="PACS-E2E-1", study_uid=STUDY, labels=("glioma",))
    files = []
    for n, data in enumerate(slices):
        orthanc.upload(data)
        files.append(tmp_path / f"slice{n}.dcm")
        files[-1].write_bytes(data)

    # Orthanc pushes the study (C-STORE SCU) to the receiver: one case, analysed by the worker.
    pushed = orthanc.send_study("clinic", orthanc.study_id(STUDY))
    assert pushed.ok, pushed.text + orthanc.log_tail()
    study = DicomStudy.objects.get(study_instance_uid=STUDY, clinic=north_admin.clinic)
    assert study.node == node
    # Each instance is a study upload, unpacked into its scan by the worker's job, then analysed.
    assert StudyUpload.objects.filter(case=study.case).count() == 2
    _wait(lambda: Scan.objects.filter(case=study.case).count() == 2, "the unpacking job", worker)
    _wait(lambda: _study_finished(study.case_id), "the analysis", worker)
    assert not study.instances.filter(scan__isnull=True).exists()  # every frame linked to its scan

    # Results come back into Orthanc's same study: one SR, one capture per analysed slice.
    _wait(lambda: OutboxItem.objects.filter(study=study, state=OutboxState.SENT).count() == 2, "SR + SC sent",
          worker, every=outbox_sweep.delay)  # fmt: skip
    sr, captures = _returned(orthanc, SR), _returned(orthanc, SC)
    assert len(sr) == 1
    analysed = Scan.objects.filter(case=study.case, status=ScanStatus.DONE).count()
    assert analysed == 2, list(Scan.objects.filter(case=study.case).values_list("status", "error"))  # real gliomas
    assert len(captures) == analysed
    assert sr[0]["tags"]["PatientID"] == "PACS-E2E-1"
    _check_clean(sr + captures)

    # The scanner re-sends the series with storescu: accepted, not analysed twice.
    again = _storescu(receiver_port, "ORTHANC", files)
    assert again.returncode == 0, again.stderr
    assert StudyUpload.objects.filter(case=study.case).count() == 2  # recognised on arrival
    assert Scan.objects.filter(case=study.case).count() == 2
    # An AE title nobody registered is refused.
    other = tmp_path / "other.dcm"
    other.write_bytes(dicomdata.training_series(1, study_uid=STUDY + ".66")[0])
    stranger = _storescu(receiver_port, "STRANGER", [other])
    assert "Rejected" in stranger.stderr + stranger.stdout, stranger
    assert not DicomStudy.objects.filter(study_instance_uid=STUDY + ".66").exists()
    # A second clinic's scanner sending the same study gets a case of its own clinic.
    south_admin = _admin("South")
    node_create(created_by=south_admin, ae_title="SOUTH_MR", host="127.0.0.1", port=104)
    south = _storescu(receiver_port, "SOUTH_MR", files)
    assert south.returncode == 0, south.stderr
    south_study = DicomStudy.objects.get(study_instance_uid=STUDY, clinic=south_admin.clinic)
    assert south_study.case_id != study.case_id
    assert south_study.case.patient.clinic == south_admin.clinic
    assert Scan.objects.filter(case=study.case).count() == 2  # north's case untouched

    # The PACS goes down; the case is signed: the verified SR and the PDF wait in the outbox.
    orthanc.stop()
    radiologist = user_create(clinic=north_admin.clinic, username="north-rad", password=PASSWORD,
                              role=Role.RADIOLOGIST)  # fmt: skip
    for scan in Scan.objects.filter(case=study.case, status=ScanStatus.DONE):
        scan_review(scan=scan, reviewer=radiologist, agrees=True)
    case_sign(case=study.case, signer=radiologist, conclusion="Glioma, as the model suggests.")
    outbox_sweep.delay()
    _wait(lambda: OutboxItem.objects.filter(study=study, state=OutboxState.RETRYING).count() == 2,
          "the outbox to retry", worker)  # fmt: skip
    assert all("No association" in item.last_error for item in OutboxItem.objects.filter(state="retrying"))

    # Back up (same storage): the next due sweep delivers them, once.
    orthanc.start()
    OutboxItem.objects.filter(state=OutboxState.RETRYING).update(next_attempt_at=study.created_at)
    _wait(lambda: OutboxItem.objects.filter(study=study, state=OutboxState.SENT).count() == 4,
          "the outbox after restart", worker, every=outbox_sweep.delay)  # fmt: skip
    srs, pdfs = _returned(orthanc, SR), _returned(orthanc, PDF)
    assert len(srs) == 2
    assert len(pdfs) == 1
    assert len(_returned(orthanc, SC)) == len(captures)
    _check_clean(srs + pdfs)
    verified = [dcmread(DicomBytesIO(i["file"])) for i in srs]
    assert sorted(ds.VerificationFlag for ds in verified) == ["UNVERIFIED", "VERIFIED"]


def test_stow_rs_over_http_with_a_good_and_a_bad_part(api: tuple[requests.Session, str]) -> None:
    session, base = api
    (good,) = dicomdata.training_series(1, study_uid=STUDY + ".5")
    boundary = "e2e-boundary-7"
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
        for part in (good, b"\x00" * 200 + b"not a dicom file")
    ) + f"--{boundary}--\r\n".encode()
    response = session.post(
        f"{base}/dicomweb/studies", data=body, timeout=60,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                 "Accept": "application/dicom+json"},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    answer = response.json()
    assert len(answer["00081199"]["Value"]) == 1
    assert len(answer["00081198"]["Value"]) == 1
    assert DicomStudy.objects.filter(study_instance_uid=STUDY + ".5").exists()
