"""Faults lose no scan: 50 real scans in flight on a real Redis (AOF, its own server) and a real
Celery worker running the shipped model, while the test kills, by PID:
- the worker's pool child 5 times, each time while it holds a scan (acks_late +
  reject_on_worker_lost put the message back);
- the worker's main process (SIGKILL, no goodbye; its orphaned child with it, as when a
  container dies), then starts a new worker (the unacknowledged message comes back after the
  visibility timeout, shortened here to CELERY_VISIBILITY_TIMEOUT=15 s);
- Redis itself (SIGKILL), restarted on its append-only file.
Result: 50/50 done, none failed, exactly one prediction each, nothing left in Redis.

A control run shows the test can fail: with reject_on_worker_lost off, one child killed mid-scan
loses that scan (its message is acknowledged, nothing brings it back).

Runs before test_worker_restart.py (file order) and stops nothing shared."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from apps.cases.services import case_create
from apps.patients.services import patient_create
from apps.scans.models import Prediction, Scan, ScanStatus
from apps.scans.services import scans_upload
from tests.testkit.data import clinic_user, upload
from tests.testkit.processes import MediaStore, PersistentRedis, Worker, celery_app_on, start_worker, worker_env
from tests.testkit.scans import real_scan_paths

VISIBILITY_TIMEOUT_S = 15
DEADLINE_S = float(os.environ.get("FAULT_TEST_DEADLINE_S", "420"))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _start(redis_url: str, log_dir: Path, media: MediaStore, **extra: str) -> Worker:
    env = worker_env(
        redis_url=redis_url, database=connection.settings_dict, media=media.env(),
        CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT_S), SCAN_MAX_ATTEMPTS="10", **extra,
    )  # fmt: skip
    return start_worker(env=env, log_dir=log_dir, prefix="fault")


def _submit(n: int, redis_url: str) -> list[int]:
    staff = clinic_user(f"Fault Clinic {n}", f"fault-{n}")
    patient = patient_create(created_by=staff, mrn=f"F-{n}", name="Fault Patient")
    case = case_create(created_by=staff, patient=patient)
    uploads = [upload(path.read_bytes(), path.name) for path in real_scan_paths(n)]
    with celery_app_on(redis_url):  # published to our Redis once the upload commits
        return [scan.pk for scan in scans_upload(case=case, uploaded_by=staff, uploads=uploads).scans]


def _pool_child(worker: Worker) -> psutil.Process:
    live = [c for c in psutil.Process(worker.proc.pid).children() if c.status() != psutil.STATUS_ZOMBIE]
    assert len(live) == 1, f"expected one pool process, found {live}\n{worker.log_tail()}"
    return live[0]


def _processing(ids: list[int], timeout: float, worker: Worker) -> int:
    """The id of a scan claimed from now on and being analysed (polled every 5 ms); a scan
    left in processing by an earlier kill does not count."""
    deadline = time.monotonic() + timeout
    scans = Scan.objects.filter(pk__in=ids, status=ScanStatus.PROCESSING, started_at__gt=timezone.now())
    while time.monotonic() < deadline:
        found = scans.values_list("pk", flat=True).first()
        if found is not None:
            return found
        time.sleep(0.005)
    raise AssertionError(f"no scan reached processing in {timeout:.0f} s\n{worker.log_tail()}")


def _wait_all_finished(ids: list[int], timeout: float, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    open_scans = Scan.objects.filter(pk__in=ids, status__in=[ScanStatus.QUEUED, ScanStatus.PROCESSING])
    while open_scans.exists():
        if time.monotonic() > deadline:
            left = dict(open_scans.values_list("pk", "status"))
            pytest.fail(f"{len(left)} scans not finished after {timeout:.0f} s: {left}\n{worker.log_tail()}")
        time.sleep(0.5)


def _wait_broker_drained(url: str, timeout: float) -> None:
    """Until the inference queue and the unacknowledged set are empty, or `timeout` passes (the
    caller's assertions then say what is left)."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while (client.llen("inference") or client.hlen("unacked")) and time.monotonic() < deadline:
        time.sleep(0.5)


def _kill_child_mid_scan(worker: Worker, ids: list[int]) -> int:
    scan_id = _processing(ids, 180, worker)
    os.kill(_pool_child(worker).pid, signal.SIGKILL)
    return scan_id


def test_fifty_scans_survive_killed_workers_and_a_killed_broker(
    transactional_db, own_redis: PersistentRedis, tmp_path: Path, media_store: MediaStore
) -> None:
    ids = _submit(50, own_redis.url)
    worker = _start(own_redis.url, tmp_path, media_store)
    killed_mid_scan = []
    try:
        # 1. The pool child, five times, each time holding a scan.
        for _ in range(5):
            killed_mid_scan.append(_kill_child_mid_scan(worker, ids))

        # 2. The main worker process (SIGKILL by PID) and, as with a dead container, its child.
        _processing(ids, 180, worker)
        children = psutil.Process(worker.proc.pid).children()
        os.kill(worker.proc.pid, signal.SIGKILL)
        for child in children:
            child.kill()
        worker.stop(signal.SIGKILL)
        worker = _start(own_redis.url, tmp_path, media_store)

        # 3. The broker: killed while a scan is in hand, restarted on its append-only file.
        _processing(ids, 180, worker)
        own_redis.kill()
        time.sleep(2)
        own_redis.start()

        _wait_all_finished(ids, DEADLINE_S, worker)
        # A message redelivered after the kills (its scan already done) may still be on its way:
        # the worker takes it and skips it. Wait for that, not for a fixed time, before counting
        # what the broker holds.
        _wait_broker_drained(own_redis.url, 120)
    finally:
        worker.stop()

    scans = Scan.objects.filter(pk__in=ids)
    assert dict(scans.values_list("status").annotate(n=Count("pk"))) == {ScanStatus.DONE: 50}, worker.log_tail()
    predictions = Prediction.objects.filter(scan__in=ids).values("scan").annotate(n=Count("pk"))
    assert sorted(row["scan"] for row in predictions) == sorted(ids)  # every scan has its prediction
    assert {row["n"] for row in predictions} == {1}  # and only one
    # The scans the kills interrupted were taken up again as new attempts.
    assert all(Scan.objects.get(pk=pk).attempts >= 2 for pk in set(killed_mid_scan))
    client = redis.Redis.from_url(own_redis.url)
    assert client.llen("inference") == 0
    assert client.hlen("unacked") == 0  # nothing left behind in the broker


def test_control_without_reject_on_worker_lost_loses_the_scan(
    transactional_db, own_redis: PersistentRedis, tmp_path: Path, media_store: MediaStore
) -> None:
    """The same kill with the protection switched off: the message is acknowledged as failed,
    the scan stays in processing and nothing brings it back (short of the periodic sweep)."""
    ids = _submit(4, own_redis.url)
    worker = _start(own_redis.url, tmp_path, media_store, CELERY_TASK_REJECT_ON_WORKER_LOST="0")
    try:
        lost = _kill_child_mid_scan(worker, ids)
        others = [pk for pk in ids if pk != lost]
        _wait_all_finished(others, DEADLINE_S, worker)
        time.sleep(VISIBILITY_TIMEOUT_S + 5)  # long enough for any unacknowledged message to return
        assert Scan.objects.get(pk=lost).status == ScanStatus.PROCESSING
    finally:
        worker.stop()
    client = redis.Redis.from_url(own_redis.url)
    assert client.llen("inference") == 0
    assert client.hlen("unacked") == 0  # the message is gone: the scan is lost
    assert not Prediction.objects.filter(scan_id=lost).exists()
