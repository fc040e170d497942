"""A real scan through the real pipeline: HTTP upload to the live server → Redis → a Celery
worker process running the shipped model → prediction, heatmap and overlay stored and served."""
from __future__ import annotations

import io
import math
import time

import pytest
import redis
import requests
from PIL import Image

from apps.scans.models import Prediction
from tests.testkit.data import PASSWORD, clinic_user
from tests.testkit.processes import SCAN_TIMEOUT_S, Worker
from tests.testkit.scans import real_scan_path
from workers.imaging import CLASS_NAMES


def wait_for_scan(session: requests.Session, url: str, timeout: float = SCAN_TIMEOUT_S) -> dict:
    """Poll the scan until it is done or failed."""
    deadline = time.monotonic() + timeout
    while True:
        body = session.get(url, timeout=10).json()
        if body["status"] in ("done", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(1)


@pytest.fixture
def api(live_server, transactional_db) -> tuple[requests.Session, str]:
    clinic_user("E2E Clinic", "e2e-staff")
    session = requests.Session()
    response = session.post(
        f"{live_server.url}/api/auth/token/", data={"username": "e2e-staff", "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    session.headers["Authorization"] = f"Token {response.json()['token']}"
    return session, live_server.url


def test_upload_over_http_is_analysed_by_a_real_worker(api: tuple[requests.Session, str], worker: Worker) -> None:
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

    stored = Prediction.objects.get(scan_id=scan["id"])
    with stored.heatmap.open("rb") as handle, Image.open(handle) as heatmap:
        assert heatmap.size == size
        assert heatmap.getextrema()[1] > 0  # the map highlights something


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
    assert [s["instance_number"] for s in body["scans"]] == [1, 2, 3]
    assert [s["name"] for s in body["skipped"]] == ["study.zip/DICOMDIR"]

    results = [wait_for_scan(session, f"{base}/api/scans/{s['id']}/") for s in body["scans"]]
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
