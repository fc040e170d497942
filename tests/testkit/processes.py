"""Real processes for the end-to-end tests and the benchmarks: a Redis server and Celery
workers, started on this machine and stopped again. No Docker, nothing mocked, no Django import."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]  # the repository: workers run `-A clinic_platform` from it
# How long a test waits for one scan through a real worker; the first scan in a worker also
# imports TensorFlow and loads the model (~30 s on 2 cores).
SCAN_TIMEOUT_S = float(os.environ.get("E2E_SCAN_TIMEOUT_S", "300"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_redis_db(url: str, db: int) -> str:
    """The same Redis server, another logical database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@contextlib.contextmanager
def redis_server(url: str | None = None, db: int = 0) -> Iterator[str]:
    """Yield a Redis URL on database `db`: the server at `url` if given (left running), else a
    redis-server started here on a free port without persistence, stopped on exit."""
    import redis

    if url:
        yield with_redis_db(url, db)
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install it (apt-get install redis-server) or set REDIS_URL")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    started = f"redis://127.0.0.1:{port}/{db}"
    try:
        client = redis.Redis.from_url(started)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield started
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class PersistentRedis:
    """A redis-server of our own with AOF (`appendfsync always`: every write on disk before it is
    acknowledged), on a fixed port and folder, so it can be killed by PID (SIGKILL) and started
    again with its data: what a broker restart looks like in production."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: install it (apt-get install redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(  # fixed argv
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start: {self.folder / 'redis.log'}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to clients."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def celery_app_on(url: str) -> Iterator[str]:
    """This process's Celery app publishes to `url` inside the block, and to what it used before
    afterwards (the test settings' memory:// or REDIS_URL)."""
    from clinic_platform.celery import app

    conf = app.conf
    saved = (
        os.environ.get("CELERY_BROKER_URL"),
        conf.get("broker_url"), conf.get("broker_read_url"), conf.get("broker_write_url"),
        conf.broker_transport_options,
    )  # fmt: skip
    # Celery's broker_url prefers the CELERY_BROKER_URL variable (the test settings set it), and
    # an explicit read/write URL (another test may have pinned one) beats broker_url.
    os.environ["CELERY_BROKER_URL"] = url
    conf.broker_url = conf.broker_read_url = conf.broker_write_url = url
    conf.broker_transport_options = {"visibility_timeout": 3600}
    app._after_fork()  # drop connection/producer pools bound to the previous broker
    assert app.connection_for_write().as_uri(include_password=True) == url
    try:
        yield url
    finally:
        env_url, conf.broker_url, conf.broker_read_url, conf.broker_write_url, conf.broker_transport_options = saved
        if env_url is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = env_url
        app._after_fork()


def worker_env(*, redis_url: str, database: Mapping[str, Any], media_root: str, **extra: str) -> dict[str, str]:
    """The environment of a worker process working on the test database and media."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "clinic_platform.test_settings",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,  # the test settings default it to memory:// otherwise
        "DATABASE_URL": database_url(database),  # the test database, by now
        "MEDIA_ROOT": media_root,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def database_url(db: Mapping[str, Any]) -> str:
    """A Django DATABASES entry as a URL that django-environ (the settings) reads back."""
    if db["ENGINE"].endswith("sqlite3"):
        mode = (db.get("OPTIONS") or {}).get("transaction_mode")
        return f"sqlite:///{db['NAME']}" + (f"?transaction_mode={mode}" if mode else "")
    if "postgresql" in db["ENGINE"]:
        auth = quote(db["USER"] or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{quote(db['NAME'])}"
    raise ValueError(f"only SQLite and PostgreSQL are supported, not {db['ENGINE']}")


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Signal the worker's whole process group (main process and pool child) and reap it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def start_worker(
    *, env: Mapping[str, str], log_dir: Path, prefix: str = "worker", ready_timeout: float = 120.0
) -> Worker:
    """`celery -A clinic_platform worker -Q inference --concurrency 1`, as deployed, in its own
    process group; returns once it reports ready (RuntimeError with its log otherwise)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}@%h"
    log = log_dir / f"{name.split('@')[0]}.log"
    cmd = [
        sys.executable, "-m", "celery", "-A", "clinic_platform", "worker",
        "-Q", "inference,maintenance", "--concurrency", "1", "--pool", "prefork",
        "--hostname", name, "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = Worker(name=name, proc=proc, log=log)
    deadline = time.monotonic() + ready_timeout
    while " ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            worker.stop(signal.SIGKILL)
            raise RuntimeError(f"celery worker did not start:\n{worker.log_tail()}")
        time.sleep(0.25)
    return worker
