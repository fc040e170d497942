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
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.testkit.processes import Worker, celery_app_on, redis_server, worker_env
from tests.testkit.processes import start_worker as start_celery_worker

E2E_REDIS_DB = 15


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        # A file, not :memory:, so that the worker process sees what the live server wrote.
        path = Path(tempfile.gettempdir()) / f"clinic-e2e-{os.getpid()}.sqlite3"
        db.setdefault("TEST", {})["NAME"] = str(path)
        # Two processes write it: a deferred transaction that reads then writes fails at once
        # with "database is locked"; IMMEDIATE ones wait their turn (passed on to the worker).
        db.setdefault("OPTIONS", {}).setdefault("transaction_mode", "IMMEDIATE")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """An empty Redis db for the e2e tests."""
    try:
        with redis_server(os.environ.get("REDIS_URL"), db=E2E_REDIS_DB) as url:
            redis.Redis.from_url(url).flushdb()
            yield url
    except RuntimeError as exc:
        pytest.fail(f"e2e tests need Redis: {exc}")


@pytest.fixture(autouse=True)
def broker(redis_url: str) -> Iterator[str]:
    """This process's Celery app publishes to the e2e Redis during each e2e test, and to what
    the test settings chose (memory:// or REDIS_URL) again afterwards, for the other tests."""
    with celery_app_on(redis_url):
        yield redis_url


@pytest.fixture(scope="session")
def start_worker(
    redis_url: str, django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], Worker]]:
    """Start `celery -A clinic_platform worker -Q inference` processes; all stopped at the end."""
    from django.conf import settings
    from django.db import connection

    started: list[Worker] = []
    env = worker_env(redis_url=redis_url, database=connection.settings_dict, media_root=str(settings.MEDIA_ROOT))
    logs = tmp_path_factory.mktemp("workers")

    def start() -> Worker:
        try:
            worker = start_celery_worker(env=env, log_dir=logs, prefix="e2e")
        except RuntimeError as exc:
            pytest.fail(str(exc))
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def worker(start_worker: Callable[[], Worker]) -> Worker:
    """One worker shared by the tests (the model loads once); tests that kill workers start
    their own with `start_worker` and stop this one first."""
    return start_worker()
