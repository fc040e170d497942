"""A real scan through the real pipeline: HTTP upload to the live server → Redis → a Celery
worker process running the shipped model → prediction, heatmap and overlay stored and served."""

from __future__ import annotations

import io
import math
import time

import redis
import requests
from PIL import Image

from apps.scans.models import Prediction
from mri.vocabulary import CLASS_NAMES
from tests.testkit.data import PASSWORD, clinic_user
from tests.testkit.processes import SCAN_TIMEOUT_S, MediaStore, Worker, wait_for_scan
from tests.testkit.scans import real_scan_path


def test_upload_over_http_is_analysed_by_a_real_worker(
    api: tuple[requests.Session, str], worker: Worker, media_store: MediaStore
) -> None:
    session, base = api
    patient = session.post(f"{base}/api/patients/", data={"mrn": "E2E-1", "name": "Pat Ient"}, timeout=10)
    assert patient.status_code == 201, patient.text
    case = session.post(f"{base}/api/cases/", data={"patient": patient.json()["id"]}, timeout=10)
    assert case.status_code == 201, case.text

    path = real_scan_path("glioma")
    with path.open("rb") as handle:
        upload = session.post(
            f"{base}/api/cases/{case.json()['id']}/scans/",
            files={"file": (path.name, handle, "image/jpeg")},
            timeout=30,
        )
    assert upload.status_code == 201, upload.text
    assert upload.json()["status"] == "queued"

    scan = wait_for_scan(session, f"{base}/api/scans/{upload.json()['id']}/")
    assert scan["status"] == "done", f"{scan}\n--- worker log ---\n{worker.log_tail()}"

    prediction = scan["prediction"]
    assert prediction["label"] in CLASS_NAMES
    assert set(prediction["probabilities"]) == set(CLASS_NAMES)
    assert math.isclose(sum(prediction["probabilities"].values()), 1.0, abs_tol=1e-3)
    assert prediction["model_version"]
    # A clear training-set glioma: the shipped model must get it right.
    assert prediction["label"] == "glioma", prediction

    with Image.open(path) as original:
        size = original.size
    for key in ("image_url", "overlay_url", "heatmap_url"):
        served = session.get(scan[key], timeout=10)
        assert served.status_code == 200, (key, served.status_code)
        with Image.open(io.BytesIO(served.content)) as image:
            assert image.size == size, (key, image.size, size)

    stored = Prediction.objects.select_related("scan").get(scan_id=scan["id"])
    with stored.heatmap.open("rb") as handle, Image.open(handle) as heatmap:
        assert heatmap.size == size
        assert heatmap.getextrema()[1] > 0  # the map highlights something

    # The upload, heatmap and overlay are where the storage puts them: objects in the bucket
    # (and nothing on the local disk the web and worker would otherwise have to share), or
    # files under MEDIA_ROOT.
    names = {stored.scan.image.name, stored.heatmap.name, stored.overlay.name}
    assert names <= media_store.names(), (media_store.kind, names)
    if media_store.kind == "s3":
        assert media_store.local_files() == []

    # Another clinic's user gets 404 for each of these files, as for a missing one.
    clinic_user("E2E Other Clinic", "e2e-other")
    outsider = requests.Session()
    token = outsider.post(f"{base}/api/auth/token/", data={"username": "e2e-other", "password": PASSWORD}, timeout=10)
    outsider.headers["Authorization"] = f"Token {token.json()['token']}"
    for key in ("image_url", "overlay_url", "heatmap_url"):
        assert outsider.get(scan[key], timeout=10).status_code == 404, key


def test_a_bad_upload_is_rejected_and_nothing_is_queued(api: tuple[requests.Session, str], broker: str) -> None:
    session, base = api
    patient = session.post(f"{base}/api/patients/", data={"mrn": "E2E-2", "name": "Bad File"}, timeout=10)
    case = session.post(f"{base}/api/cases/", data={"patient": patient.json()["id"]}, timeout=10)
    queued_before = redis.Redis.from_url(broker).llen("inference")
    response = session.post(
        f"{base}/api/cases/{case.json()['id']}/scans/",
        files={"file": ("scan.jpg", b"GIF89a not really a scan", "image/jpeg")},
        timeout=10,
    )
    assert response.status_code == 400
    assert "scan.jpg" in response.text
    assert redis.Redis.from_url(broker).llen("inference") == queued_before


def test_zipped_dicom_series_over_http_is_analysed_slice_by_slice(
    api: tuple[requests.Session, str], worker: Worker
) -> None:
    """A 3-slice MR series, zipped as a PACS exports it (shuffled names, a DICOMDIR), made from
    real training scans: three scans in slice order, each analysed by the real worker, each
    with its de-identified DICOM served."""
    import pydicom

    from tests.testkit import dicom as dicomdata

    session, base = api
    patient = session.post(f"{base}/api/patients/", data={"mrn": "E2E-DCM", "name": "Dee Icom"}, timeout=10)
    case = session.post(f"{base}/api/cases/", data={"patient": patient.json()["id"]}, timeout=10)
    slices = dicomdata.training_series(3, labels=("glioma", "notumor", "pituitary"), patient_id="E2E-DCM")
    upload = session.post(
        f"{base}/api/cases/{case.json()['id']}/scans/",
        files={"file": ("study.zip", dicomdata.series_zip(slices), "application/zip")},
        timeout=60,
    )
    assert upload.status_code == 201, upload.text
    body = upload.json()
    assert body["scans"] == []  # the request checked headers and stored the study: a worker unpacks it
    assert [s["name"] for s in body["skipped"]] == ["study.zip/DICOMDIR"]
    (study,) = body["studies"]
    assert (study["status"], study["slices_total"]) == ("received", 3)

    case_url = f"{base}/api/cases/{case.json()['id']}/"
    deadline = time.monotonic() + SCAN_TIMEOUT_S
    while time.monotonic() < deadline:
        detail = session.get(case_url, timeout=10).json()
        if detail["studies"][0]["status"] not in ("received", "unpacking"):
            break
        time.sleep(0.5)
    assert detail["studies"][0]["status"] in ("analysing", "done"), f"{detail['studies']}\n{worker.log_tail()}"
    scans = sorted(detail["scans"], key=lambda s: s["instance_number"])
    assert [s["instance_number"] for s in scans] == [1, 2, 3]
    assert {s["study_upload"] for s in scans} == {study["id"]}

    results = [wait_for_scan(session, f"{base}/api/scans/{s['id']}/") for s in scans]
    assert [r["status"] for r in results] == ["done"] * 3, f"{results}\n--- worker log ---\n{worker.log_tail()}"
    assert [r["prediction"]["label"] for r in results] == ["glioma", "notumor", "pituitary"]
    for result in results:
        assert result["format"] == "DICOM"
        assert result["patient_id_mismatch"] is False
        served = session.get(result["dicom_url"], timeout=10)
        assert served.status_code == 200
        dataset = pydicom.dcmread(io.BytesIO(served.content))
        assert dataset.PatientIdentityRemoved == "YES"
        assert "E2E-DCM" not in served.content.decode("latin-1")
        with Image.open(io.BytesIO(session.get(result["overlay_url"], timeout=10).content)) as overlay:
            assert overlay.size == (int(dataset.Columns), int(dataset.Rows))


def test_a_slice_with_a_name_burnt_in_is_held_by_the_real_worker_and_its_neighbours_analysed(
    api: tuple[requests.Session, str], worker: Worker
) -> None:
    """The burnt-in text check inside a real worker process (Tesseract loaded in the Celery
    child, the study task's lanes): of a 4-slice zipped series, the slice with a name drawn into
    its pixels is held and never analysed, the three others are analysed, and the study says so."""
    from tests.testkit import dicom as dicomdata
    from tests.testkit.scans import with_burnt_text

    session, base = api
    patient = session.post(f"{base}/api/patients/", data={"mrn": "E2E-TXT", "name": "Tex Tual"}, timeout=10)
    case = session.post(f"{base}/api/cases/", data={"patient": patient.json()["id"]}, timeout=10)
    jpegs = dicomdata.training_jpegs(4, labels=("glioma", "notumor", "pituitary", "meningioma"))
    jpegs[1] = with_burnt_text(jpegs[1], "SMITH JOHN 12345678", size=16)
    study_uid = "1.2.826.0.1.3680043.8.498.77"
    slices = [
        dicomdata.mr_slice_from_jpeg(
            jpeg,
            identity=dicomdata.Identity(
                patient_id="E2E-TXT",
                study_uid=study_uid,
                series_uid=f"{study_uid}.1",
                instance=i + 1,
                position_z=5.0 * i,
            ),
        )
        for i, jpeg in enumerate(jpegs)
    ]
    upload = session.post(
        f"{base}/api/cases/{case.json()['id']}/scans/",
        files={"file": ("study.zip", dicomdata.series_zip(slices), "application/zip")},
        timeout=60,
    )
    assert upload.status_code == 201, upload.text

    case_url = f"{base}/api/cases/{case.json()['id']}/"
    deadline = time.monotonic() + SCAN_TIMEOUT_S
    while time.monotonic() < deadline:
        detail = session.get(case_url, timeout=10).json()
        statuses = [s["status"] for s in detail["scans"]]
        if len(statuses) == 4 and all(s in ("done", "held", "failed", "rejected") for s in statuses):
            break
        time.sleep(0.5)
    scans = sorted(detail["scans"], key=lambda s: s["instance_number"])
    assert [s["status"] for s in scans] == ["done", "held", "done", "done"], f"{scans}\n{worker.log_tail()}"
    held = session.get(f"{base}/api/scans/{scans[1]['id']}/", timeout=10).json()
    assert held["held"] is True
    assert held["prediction"] is None
    assert "text burnt into the image" in held["hold_reason"]
    assert "SMITH" not in str(held)  # the text is never stored, shown or logged
    assert "SMITH" not in worker.log.read_text(errors="replace")
    (study,) = detail["studies"]
    assert study["status"] == "held", study
