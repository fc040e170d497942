"""End-to-end fixtures: a real Redis, real Celery worker processes running the shipped model,
and the Django app under pytest-django's live HTTP server.

The worker is another process, so it must see the same database and media as the live server:
- PostgreSQL (DATABASE_URL, as in CI): the worker gets the test database's name;
- SQLite: the test database is put in a file (an in-memory one is invisible to other processes).
The test process's Celery app is pointed at the same Redis, so uploads over HTTP are published
where the worker listens. Redis is REDIS_URL (db 15, so nothing else's messages are replayed)
or, when unset, a redis-server started here on a free port.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import redis
from e2e_support import ROOT, Worker

E2E_REDIS_DB = 15
WORKER_READY_TIMEOUT_S = 120.0


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        # A file, not :memory:, so that the worker process sees what the live server wrote.
        path = Path(tempfile.gettempdir()) / f"clinic-e2e-{os.getpid()}.sqlite3"
        db.setdefault("TEST", {})["NAME"] = str(path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield _with_db(os.environ["REDIS_URL"], E2E_REDIS_DB)
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("e2e tests need Redis: set REDIS_URL or install redis-server")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/{E2E_REDIS_DB}"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def broker(redis_url: str) -> Iterator[str]:
    """An empty Redis db, with this process's Celery app publishing to it."""
    from clinic_platform.celery import app

    redis.Redis.from_url(redis_url).flushdb()
    saved = (os.environ.get("CELERY_BROKER_URL"), app.conf.broker_url, app.conf.broker_transport_options)
    # Celery's broker_url prefers the CELERY_BROKER_URL variable (the test settings set it).
    os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = redis_url
    app.conf.broker_transport_options = {"visibility_timeout": 3600}
    app._after_fork()  # drop connection/producer pools bound to the previous broker
    assert app.connection_for_write().as_uri(include_password=True) == redis_url
    yield redis_url
    env_url, app.conf.broker_url, app.conf.broker_transport_options = saved
    if env_url is None:
        os.environ.pop("CELERY_BROKER_URL", None)
    else:
        os.environ["CELERY_BROKER_URL"] = env_url
    app._after_fork()


def _database_url() -> str:
    """The test database as a URL the worker's settings (django-environ) understand."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    if "postgresql" in db["ENGINE"]:
        auth = quote(db["USER"] or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = f"{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}"
        return f"postgres://{host}/{quote(db['NAME'])}"
    pytest.fail(f"e2e tests support SQLite and PostgreSQL, not {db['ENGINE']}")
    raise AssertionError  # unreachable, for type checkers


@pytest.fixture(scope="session")
def start_worker(
    broker: str, django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], Worker]]:
    """Start `celery -A clinic_platform worker -Q inference` processes; all stopped at the end."""
    from django.conf import settings

    started: list[Worker] = []
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "clinic_platform.test_settings",
        "REDIS_URL": broker,
        "CELERY_BROKER_URL": broker,  # the test settings default it to memory:// otherwise
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    logs = tmp_path_factory.mktemp("workers")

    def start() -> Worker:
        name = f"e2e-{uuid.uuid4().hex[:8]}@%h"
        log = logs / f"{name.split('@')[0]}.log"
        cmd = [
            sys.executable, "-m", "celery", "-A", "clinic_platform", "worker",
            "-Q", "inference", "--concurrency", "1", "--pool", "prefork",
            "--hostname", name, "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        worker = Worker(name=name, proc=proc, log=log)
        started.append(worker)
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while " ready." not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                worker.stop(signal.SIGKILL)
                pytest.fail(f"celery worker did not start:\n{worker.log_tail()}")
            time.sleep(0.25)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def worker(start_worker: Callable[[], Worker]) -> Worker:
    """One worker shared by the tests (the model loads once); tests that kill workers start
    their own with `start_worker` and stop this one first."""
    return start_worker()
