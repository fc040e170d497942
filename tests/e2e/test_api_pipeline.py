"""A real scan through the real pipeline: HTTP upload to the live server → Redis → a Celery
worker process running the shipped model → prediction, heatmap and overlay stored and served."""
from __future__ import annotations

import io
import math
import time

import pytest
import redis
import requests
from e2e_support import SCAN_TIMEOUT_S, scan_file
from PIL import Image

from apps.accounts.models import Role
from apps.accounts.services import clinic_create, user_create
from apps.scans.models import Prediction
from bench.harness import Worker
from workers.imaging import CLASS_NAMES

PASSWORD = "e2e-api-password"


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
    clinic = clinic_create(name="E2E Clinic")
    user_create(clinic=clinic, username="e2e-staff", password=PASSWORD, role=Role.CLINIC_STAFF)
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

    path = scan_file("glioma")
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
