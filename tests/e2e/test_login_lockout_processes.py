"""Login lockouts are shared by every web process: two real gunicorn processes on one Redis
cache (as deployed with REDIS_URL) and one database, attacked in turns over real HTTP.

The control runs the same processes with a per-process (local-memory) cache, where failures
split between the processes stay under the limit and the right password gets in: so the
shared-cache test can fail."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from apps.accounts.models import Role
from apps.accounts.services import clinic_create, user_create
from tests.testkit.processes import ROOT, database_url, free_port, with_redis_db

PASSWORD = "lockout-test-password"
CACHE_DB = 12  # the shared cache's own Redis database, flushed by these tests


class WebProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [
            sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
            "--access-logfile", "-", "clinic_platform.wsgi:application",
        ]  # fmt: skip
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/healthz", timeout=10).status_code == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"gunicorn did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=20)

    def token(self, username: str, password: str, forwarded: str) -> requests.Response:
        return requests.post(
            f"{self.url}/api/auth/token/",
            data={"username": username, "password": password},
            headers={"X-Forwarded-For": forwarded},
            timeout=10,
        )

    def login_page(self, username: str, password: str, forwarded: str) -> requests.Response:
        session = requests.Session()
        session.get(f"{self.url}/login/", timeout=10)
        return session.post(
            f"{self.url}/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"X-Forwarded-For": forwarded, "Referer": f"{self.url}/login/"},
            allow_redirects=False,
            timeout=10,
        )


@pytest.fixture
def web_processes(redis_url, transactional_db, tmp_path) -> Iterator[callable]:
    from django.db import connection

    cache_url = with_redis_db(redis_url, CACHE_DB)
    redis.Redis.from_url(cache_url).flushdb()
    started: list[WebProcess] = []

    def start(*, shared_cache: bool) -> tuple[WebProcess, WebProcess]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "clinic_platform.test_settings",
            "DATABASE_URL": database_url(connection.settings_dict),
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "CACHE_URL": cache_url,
            "TEST_SHARED_CACHE": "1" if shared_cache else "0",
            "TRUSTED_PROXY_COUNT": "0",  # gunicorn reached directly: X-Forwarded-For is the client's word
            "API_TOKEN_THROTTLE_RATE": "1000/min",  # the lockout is under test, not the throttle
            "PYTHONUNBUFFERED": "1",
        }
        pair = tuple(WebProcess(env, tmp_path / f"web-{len(started) + i}.log") for i in range(2))
        started.extend(pair)
        return pair

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def victim(transactional_db):
    clinic = clinic_create(name="Lockout Clinic")
    return user_create(clinic=clinic, username="lockout-victim", password=PASSWORD, role=Role.CLINIC_ADMIN)


def test_thirty_wrong_passwords_across_two_processes_then_the_right_one_is_refused(web_processes, victim):
    first, second = web_processes(shared_cache=True)
    # Failures split between the processes: 3 + 2 reach the limit of 5 only if they share counts.
    for i in range(5):
        response = (first, second)[i % 2].token(victim.username, f"wrong-{i}", forwarded=f"198.51.100.{i}")
        assert response.status_code in (400, 429)
    refused = first.token(victim.username, PASSWORD, forwarded="203.0.113.1")
    assert refused.status_code == 429, refused.text
    assert "token" not in refused.json()
    assert int(refused.headers["Retry-After"]) > 0
    # The attack: 30 wrong passwords, a new X-Forwarded-For each, in turns, then the
    # right one on each process and each way in.
    for i in range(30):
        (first, second)[i % 2].token(victim.username, f"again-{i}", forwarded=f"192.0.2.{i}")
    for process in (first, second):
        assert process.token(victim.username, PASSWORD, forwarded="203.0.113.2").status_code == 429
        page = process.login_page(victim.username, PASSWORD, forwarded="203.0.113.3")
        assert page.status_code == 429
        assert "Try again in" in page.text
        assert "sessionid" not in page.cookies


def test_control_per_process_counts_let_the_right_password_in(web_processes, victim):
    first, second = web_processes(shared_cache=False)
    for i in range(5):
        (first, second)[i % 2].token(victim.username, f"wrong-{i}", forwarded=f"198.51.100.{i}")
    # 3 failures in one process, 2 in the other: neither reached 5, so the lockout is not shared.
    assert first.token(victim.username, PASSWORD, forwarded="203.0.113.1").status_code == 200
