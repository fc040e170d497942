"""gunicorn.conf.py, as every command line (image, compose, Kubernetes) picks it up: the
errors gunicorn answers itself are in the one JSON error shape, and the access log carries no
query strings (patient-name searches) nor referrers. A real gunicorn on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.testkit.processes import gunicorn_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("gunicorn")
    log = folder / "access.log"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clinic_platform.settings", "DJANGO_DEBUG": "1",
           "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}"}  # fmt: skip
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    with gunicorn_server(env, folder / "gunicorn.log", "--workers", "1", "--access-logfile", str(log)) as base:
        yield base, log


def test_gunicorns_own_414_is_in_the_one_error_shape(served):
    base, _ = served
    response = requests.get(f"{base}/history/?q=" + "A" * 9000, timeout=10)
    assert response.status_code == 414
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "too_large", "message": "The address is too long.", "fields": {}}}
    # A malformed request line: 400, same shape, the line not echoed back.
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"NOT A REQUEST <script>\r\n\r\n")
        answer = raw.recv(4096).decode("latin1")
    assert answer.startswith("HTTP/1.1 400")
    assert '"error": {"code": "invalid"' in answer
    assert "<script>" not in answer


def test_access_log_carries_no_patient_name_search(served):
    base, log = served
    requests.get(f"{base}/history/?q=Surname-Smithers", headers={"Referer": f"{base}/patients/?q=Surname-Smithers"},
                 timeout=10, allow_redirects=False)  # fmt: skip
    deadline = time.monotonic() + 10
    while "/history/" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert '"GET /history/ HTTP/1.1" 302' in text
    assert "Smithers" not in text


def test_make_runs_runserver_access_log_drops_query_strings(settings):
    import logging

    from clinic_platform.logcontext import StripQueryFilter

    logger = logging.getLogger("django.server")
    assert any(isinstance(f, StripQueryFilter) for f in logger.filters)
    line = ("GET /history/?q=Smithers HTTP/1.1", "200", "9")
    record = logger.makeRecord("django.server", logging.INFO, __file__, 1, '"%s" %s %s', line, None)
    for log_filter in logger.filters:
        log_filter.filter(record)
    assert record.getMessage() == '"GET /history/ HTTP/1.1" 200 9'
