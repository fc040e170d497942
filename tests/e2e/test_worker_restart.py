"""Killing the worker mid-scan loses nothing: the scan is picked up again and finished by a
restarted worker. Runs last in tests/e2e (file order) because it stops the shared worker."""
from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import F
from PIL import Image

from apps.cases.services import case_create
from apps.patients.services import patient_create
from apps.scans.models import Scan, ScanStatus
from apps.scans.services import scans_requeue_stale, scans_upload
from tests.testkit.data import clinic_user
from tests.testkit.processes import SCAN_TIMEOUT_S, Worker
from tests.testkit.scans import real_scan_path


def _wait_status(scan_id: int, statuses: set[str], timeout: float, poll: float = 0.2) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = Scan.objects.values_list("status", flat=True).get(pk=scan_id)
        if status in statuses or time.monotonic() > deadline:
            return status
        time.sleep(poll)


def _large_scan() -> SimpleUploadedFile:
    """A real scan upscaled to 2048 px: a longer analysis, so the kill lands mid-scan."""
    path: Path = real_scan_path("meningioma")
    with Image.open(path) as image:
        big = image.convert("L").resize((2048, 2048))
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    return SimpleUploadedFile(f"{path.stem}-2048.png", buf.getvalue(), "image/png")


def test_worker_killed_mid_scan_loses_nothing(
    transactional_db, start_worker: Callable[[], Worker], worker: Worker, settings
) -> None:
    worker.stop()  # only the workers of this test may take the scan
    staff = clinic_user("Restart Clinic", "restart")
    patient = patient_create(created_by=staff, mrn="R-1", name="Re Start")
    case = case_create(created_by=staff, patient=patient)

    first = start_worker()
    # The model is loaded when the pool process starts, so a scan is in "processing" for well
    # under a second. Freeze the worker (SIGSTOP) the moment it claims one, check the scan is
    # still unfinished, then kill it; a scan finished before the freeze is simply tried again.
    for _ in range(5):
        (scan,) = scans_upload(case=case, uploaded_by=staff, uploads=[_large_scan()]).scans  # published now
        status = _wait_status(scan.pk, {"processing", "done", "failed"}, timeout=120, poll=0.005)
        assert status != "failed", f"{scan.pk} failed\n{first.log_tail()}"
        if status == "processing":
            os.killpg(first.proc.pid, signal.SIGSTOP)
            if Scan.objects.get(pk=scan.pk).status == ScanStatus.PROCESSING:
                break
            os.killpg(first.proc.pid, signal.SIGCONT)
    else:
        pytest.fail(f"could not catch a scan mid-analysis\n{first.log_tail()}")
    first.stop(signal.SIGKILL)  # main process and pool child, mid-scan: no chance to clean up

    assert Scan.objects.get(pk=scan.pk).status == ScanStatus.PROCESSING  # left behind, not lost
    # Time passes beyond the task's hard limit; then the periodic sweep runs (as beat would).
    Scan.objects.filter(pk=scan.pk).update(
        started_at=F("started_at") - timedelta(seconds=settings.SCAN_TASK_TIME_LIMIT + 120)
    )
    second = start_worker()
    report = scans_requeue_stale()
    assert (report.requeued, report.published) == (1, 1)

    status = _wait_status(scan.pk, {"done", "failed"}, timeout=SCAN_TIMEOUT_S)
    scan.refresh_from_db()
    assert status == "done", f"{status} {scan.error}\n{second.log_tail()}"
    assert scan.attempts == 2
    assert scan.prediction.label
