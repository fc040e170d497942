"""End-to-end fixtures: a real Redis, real Celery worker processes running the shipped model,
and the Django app under pytest-django's live HTTP server.

The worker is another process, so it must see the same database and media as the live server:
- PostgreSQL (DATABASE_URL, as in CI): the worker gets the test database's name;
- SQLite: the test database is put in a file (an in-memory one is invisible to other processes).
Media is local (MEDIA_ROOT, a throw-away folder) or, with E2E_STORAGE=s3 or S3_ENDPOINT_URL set,
a real S3 bucket (SeaweedFS: the one the environment names, or one started here) under a prefix
of this run's own; the live server and the workers then share no disk at all.
The test process's Celery app is pointed at the same Redis, so uploads over HTTP are published
where the worker listens. Redis is REDIS_URL (db 15, so nothing else's messages are replayed)
or, when unset, a redis-server started here on a free port.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from clinic_platform.settings.storage import s3_storage
from tests.testkit.data import PASSWORD, clinic_user
from tests.testkit.processes import (
    MediaStore,
    S3Server,
    Worker,
    celery_app_on,
    free_port,
    redis_server,
    s3_from_env,
    worker_env,
)
from tests.testkit.processes import start_worker as start_celery_worker

E2E_REDIS_DB = 15
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: apt-get install chromium (requirements/system.txt; make test "
            "installs it), or set CHROMIUM_PATH"
        )
    # Playwright's sync API runs an event loop in this thread; the ORM calls made by the test
    # itself are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        context = browser.new_context(viewport={"width": 1024, "height": 768})  # a tablet in landscape
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        if os.environ.get("E2E_SCREENSHOTS"):
            page.screenshot(path=str(Path(os.environ["E2E_SCREENSHOTS"]) / "case.png"), full_page=True)
        context.close()
        browser.close()


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


def _s3_wanted() -> bool:
    return os.environ.get("E2E_STORAGE", "").lower() == "s3" or s3_from_env() is not None


@pytest.fixture(scope="session")
def media_store(request: pytest.FixtureRequest) -> Iterator[MediaStore]:
    """The storage of the whole e2e run (see the module docstring)."""
    from django.conf import settings
    from django.test import override_settings

    root = Path(settings.MEDIA_ROOT)
    if not _s3_wanted():
        yield MediaStore("local", root)
        return
    server: S3Server = request.getfixturevalue("s3_server")
    prefix = f"e2e-{uuid.uuid4().hex[:12]}"
    storage = s3_storage(
        endpoint_url=server.endpoint_url, bucket=server.bucket, access_key=server.access_key,
        secret_key=server.secret_key, prefix=prefix,
    )  # fmt: skip
    with override_settings(STORAGES={**settings.STORAGES, "default": storage}):
        yield MediaStore("s3", root, server, prefix)


@pytest.fixture(autouse=True)
def _storage_for_every_test(media_store: MediaStore) -> MediaStore:
    """Every e2e test (live server included) runs on the session's storage."""
    return media_store


@pytest.fixture(scope="session")
def start_worker(
    redis_url: str, django_db_setup: None, tmp_path_factory: pytest.TempPathFactory, media_store: MediaStore
) -> Iterator[Callable[[], Worker]]:
    """Start `celery -A clinic_platform worker -Q inference` processes; all stopped at the end."""
    from django.db import connection

    started: list[Worker] = []
    env = worker_env(redis_url=redis_url, database=connection.settings_dict, media=media_store.env())
    logs = tmp_path_factory.mktemp("workers")

    def start() -> Worker:
        try:
            # Each worker serves its Prometheus metrics on a port of its own.
            worker = start_celery_worker(
                env={**env, "WORKER_METRICS_PORT": str(free_port())}, log_dir=logs, prefix="e2e"
            )
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


@pytest.fixture
def api(live_server, transactional_db) -> tuple[requests.Session, str]:
    clinic_user("E2E Clinic", "e2e-staff")
    session = requests.Session()
    response = session.post(
        f"{live_server.url}/api/auth/token/", data={"username": "e2e-staff", "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    session.headers["Authorization"] = f"Token {response.json()['token']}"
    return session, live_server.url
