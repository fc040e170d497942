"""`make run`'s filesystem queue (no Redis): a worker killed mid-scan leaves the scan in
processing, and that queue never delivers the message again. The sweep sees that the worker
process that claimed it (recorded on the scan, host:pid) is gone and sends the scan again at
once, instead of after the task's hard time limit (~6.5 min). Real processes: a Celery worker
on the filesystem transport, killed with SIGKILL; the sweep as `manage.py requeue_stale_scans`;
a second worker that finishes the scan."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from apps.cases.services import case_create
from apps.patients.services import patient_create
from apps.scans import services as scan_services
from apps.scans.models import Scan, ScanStatus
from tests.testkit.data import clinic_user, upload
from tests.testkit.processes import SCAN_TIMEOUT_S, database_url
from tests.testkit.processes import start_worker as start_celery_worker
from tests.testkit.scans import real_scan_bytes

ROOT = Path(__file__).resolve().parents[2]


def _local_env(tmp_path: Path, media: dict[str, str]) -> dict[str, str]:
    """`make run`'s setup: no REDIS_URL, so the filesystem queue (under tmp_path) and the sweep's
    local worker check (SCAN_SWEEP_CHECKS_LOCAL_WORKERS defaults on); the test database."""
    from django.db import connection

    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "clinic_platform.test_settings",
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_QUEUE_DIR": str(tmp_path / "queue"),
        "DATABASE_URL": database_url(connection.settings_dict),
        "WORKER_PRELOAD_MODEL": "0",  # the model loads inside the first task: a long "processing"
        "PYTHONUNBUFFERED": "1",
        **media,
    }


def _run(env: dict[str, str], code: str) -> str:
    result = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def _wait(scan_id: int, statuses: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = Scan.objects.values_list("status", flat=True).get(pk=scan_id)
        if status in statuses or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_a_killed_workers_scan_is_sent_again_at_once_on_the_filesystem_queue(
    transactional_db, media_store, tmp_path, monkeypatch
) -> None:
    env = _local_env(tmp_path, media_store.env())
    staff = clinic_user("Local Clinic", "local-run")
    case = case_create(created_by=staff, patient=patient_create(created_by=staff, mrn="L-1", name="Lo Cal"))
    # Published below on the local queue, by a process with `make run`'s settings; not here.
    monkeypatch.setattr(scan_services.publishing, "scan_enqueue", lambda scan_id: False)
    (scan,) = scan_services.scans_upload(
        case=case, uploaded_by=staff, uploads=[upload(real_scan_bytes("glioma"))]
    ).scans

    first = start_celery_worker(env=env, log_dir=tmp_path, prefix="local")
    try:
        _run(env, f"from workers.tasks import analyze_scan; analyze_scan.delay({scan.pk})")
        status = _wait(scan.pk, {"processing", "done", "failed"}, timeout=120)
        assert status == "processing", f"{status}\n{first.log_tail()}"
    finally:
        first.stop(signal.SIGKILL)  # main process and pool child, mid-scan
    scan.refresh_from_db()
    assert scan.status == ScanStatus.PROCESSING
    assert scan.claimed_by.rpartition(":")[2].isdigit()  # the killed pool process's pid
    killed_at = time.monotonic()

    out = _run(env, "from django.core.management import call_command; call_command('requeue_stale_scans')")
    assert "requeued=1 published=1" in out, out
    assert time.monotonic() - killed_at < 60  # not the hard time limit's ~6.5 minutes
    assert Scan.objects.get(pk=scan.pk).status == ScanStatus.QUEUED

    second = start_celery_worker(env=env, log_dir=tmp_path, prefix="local2")
    try:
        status = _wait(scan.pk, {"done", "failed"}, timeout=SCAN_TIMEOUT_S)
    finally:
        second.stop()
    scan.refresh_from_db()
    assert status == "done", f"{status} {scan.error}\n{second.log_tail()}"
    assert scan.attempts == 2
