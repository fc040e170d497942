"""Scans per minute through the queue with one worker: real Redis, a real Celery worker process
with the shipped model, real scans from the training set.

Scans are submitted with the same service the page and the API call (`scans_upload`), which
stores them and publishes one message per scan after the commit; the clock runs from the
submit until the last scan is done. A warm-up scan runs first (and waits for the model,
which each pool process loads when it starts); it is reported, not counted.

    .venv/bin/python bench/queue_throughput.py [--scans 40]
Redis: REDIS_URL (db 14 is used and flushed) or a redis-server started on a free port.
Database: a temporary SQLite file, or --database-url (e.g. the PostgreSQL one).
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.testkit.processes import redis_server, start_worker  # noqa: E402
from tests.testkit.scans import real_scan_paths  # noqa: E402

BENCH_REDIS_DB = 14


def _scans(n: int) -> list[Path]:
    """n real scans, the four classes in turn."""
    try:
        return real_scan_paths(n)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


def _wait_done(scan_ids: list[int], timeout: float) -> None:
    """Until every scan is done or failed. A scan put back in the queue after an error would
    wait for the periodic sweep (minutes; no beat runs here): stop and say so instead."""
    from apps.scans.models import Scan, ScanStatus

    deadline = time.monotonic() + timeout
    scans = Scan.objects.filter(pk__in=scan_ids)
    while scans.filter(status__in=[ScanStatus.QUEUED, ScanStatus.PROCESSING]).exists():
        retried = list(scans.filter(status=ScanStatus.QUEUED, attempts__gt=0).values_list("pk", flat=True))
        if retried:
            raise SystemExit(f"scans {retried} hit an error and went back to the queue: see the worker log")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {len(scan_ids)} scans")
        time.sleep(0.1)


@dataclass
class BenchStack:
    tmp: Path  # throw-away folder: database file, media, worker logs
    env: dict[str, str]  # what the worker process gets (this process has it too)
    user: Any  # a clinic staff user of a fresh clinic


@contextmanager
def bench_stack(name: str, database_url: str | None) -> Iterator[BenchStack]:
    """A temporary folder, Redis (flushed), this process set up on a migrated database with one
    clinic user, and the environment a worker needs to share database, broker and media."""
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp_name, redis_server(
        os.environ.get("REDIS_URL"), db=BENCH_REDIS_DB
    ) as redis_url:
        tmp = Path(tmp_name)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "clinic_platform.test_settings",
            # IMMEDIATE: two processes write this SQLite file; a deferred transaction that reads
            # then writes fails at once with "database is locked" instead of waiting its turn.
            "DATABASE_URL": database_url or f"sqlite:///{tmp / (name + '.sqlite3')}?transaction_mode=IMMEDIATE",
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "MEDIA_ROOT": str(tmp / "media"),
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(env)  # this process and the worker share database, broker and media
        import django
        import redis

        django.setup()
        from django.core.management import call_command

        from apps.accounts.models import Role
        from apps.accounts.services import clinic_create, user_create

        redis.Redis.from_url(redis_url).flushdb()
        call_command("migrate", verbosity=0)
        clinic = clinic_create(name=name)
        yield BenchStack(tmp, env, user_create(clinic=clinic, username="bench", password=None, role=Role.CLINIC_STAFF))


def worker_bench_args(parser: argparse.ArgumentParser, *, timeout: float = 900.0) -> argparse.Namespace:
    """The options every worker benchmark takes, parsed; then a SIGTERM (timeout, CI) unwinds
    through the finally blocks, so the worker and Redis stop too."""
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--timeout", type=float, default=timeout)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=40)
    args = worker_bench_args(parser)

    with bench_stack("queue-bench", args.database_url) as stack:
        from django.core.files.uploadedfile import SimpleUploadedFile
        from django.db import connection

        from apps.cases.services import case_create
        from apps.patients.services import patient_create
        from apps.scans.models import Scan
        from apps.scans.services import scans_upload

        user = stack.user
        case = case_create(created_by=user, patient=patient_create(created_by=user, mrn="Q-1", name="Queue Bench"))
        files = _scans(args.scans + 1)

        def submit(paths: list[Path]) -> list[int]:
            uploads = [SimpleUploadedFile(p.name, p.read_bytes(), "image/jpeg") for p in paths]
            return [scan.pk for scan in scans_upload(case=case, uploaded_by=user, uploads=uploads).scans]

        t0 = time.perf_counter()
        worker = start_worker(env=stack.env, log_dir=stack.tmp, prefix="bench")
        try:
            ready = time.perf_counter() - t0
            t0 = time.perf_counter()
            _wait_done(submit(files[:1]), args.timeout)
            warmup = time.perf_counter() - t0

            t0 = time.perf_counter()
            ids = submit(files[1:])
            submitted = time.perf_counter() - t0
            _wait_done(ids, args.timeout)
            elapsed = time.perf_counter() - t0
        except BaseException:
            print(worker.log_tail(), file=sys.stderr)
            raise
        finally:
            worker.stop()

        scans = list(Scan.objects.filter(pk__in=ids).select_related("prediction"))
        failed = [s for s in scans if s.status != "done"]
        work = [(s.finished_at - s.started_at).total_seconds() * 1000 for s in scans if s.started_at and s.finished_at]
        analyze = [s.prediction.timings_ms.get("total", 0.0) for s in scans if s.status == "done"]
        print(f"database: {connection.vendor}; broker: Redis; 1 worker, concurrency 1, prefetch 1")
        print(f"worker ready: {ready:.1f} s; first scan (its pool process loads the model): {warmup:.1f} s")
        print(f"{len(ids)} scans submitted in {submitted:.2f} s, all finished after {elapsed:.1f} s "
              f"({len(failed)} failed)")
        print(f"throughput: {len(ids) / elapsed * 60:.1f} scans/minute")
        print(f"per scan in the worker (claim→stored): median {statistics.median(work):.0f} ms, "
              f"max {max(work):.0f} ms; analyze() total median {statistics.median(analyze):.0f} ms")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
