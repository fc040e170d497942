"""Killing the worker mid-scan loses nothing: the scan is picked up again and finished by a
restarted worker. Runs last in tests/e2e (file order) because it stops the shared worker."""
from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import F
from e2e_support import SCAN_TIMEOUT_S, scan_file

from apps.accounts.models import Role
from apps.accounts.services import clinic_create, user_create
from apps.cases.services import case_create
from apps.patients.services import patient_create
from apps.scans.models import Scan, ScanStatus
from apps.scans.services import scans_requeue_stale, scans_submit
from bench.harness import Worker


def _wait_status(scan_id: int, statuses: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = Scan.objects.values_list("status", flat=True).get(pk=scan_id)
        if status in statuses or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_worker_killed_mid_scan_loses_nothing(
    transactional_db, start_worker: Callable[[], Worker], worker: Worker, settings
) -> None:
    worker.stop()  # only the workers of this test may take the scan
    clinic = clinic_create(name="Restart Clinic")
    staff = user_create(clinic=clinic, username="restart", password="x-restart-pw", role=Role.CLINIC_STAFF)
    patient = patient_create(created_by=staff, mrn="R-1", name="Re Start")
    case = case_create(created_by=staff, patient=patient)
    path: Path = scan_file("meningioma")
    (scan,) = scans_submit(
        case=case, uploaded_by=staff, uploads=[SimpleUploadedFile(path.name, path.read_bytes(), "image/jpeg")]
    )  # committed at once (no outer transaction): published to Redis

    first = start_worker()
    status = _wait_status(scan.pk, {"processing", "done", "failed"}, timeout=60)
    assert status == "processing", f"{status}\n{first.log_tail()}"
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
