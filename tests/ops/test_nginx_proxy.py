"""deploy/nginx/clinic.conf.template run for real (Debian's nginx) in front of the real Django
(live server, real HTTP): a client that is not signed in cannot make the proxy spool a large
body. nginx buffers a body completely before passing it on, so before this rule any client
could park 272 MiB in the proxy's temporary files before Django refused it; now a large body
goes only to the upload URLs, and only after Django said from the headers that the client is
signed in. Each probe declares a large body, sends only its first 64 KiB and waits: an answer
that comes back while the body is still unsent proves nothing past that was read."""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.testkit.data import api_token as new_api_token
from tests.testkit.data import make_world
from tests.testkit.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "clinic.conf.template"
HOST = "localhost"  # in the test settings' ALLOWED_HOSTS
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"



def _render(tmp: Path, upstream: str, https_port: int, http_port: int) -> Path:
    """The template as the nginx image would fill it in, pointed at the live server and at
    ports and certificates of this test. Debian 12's nginx (1.22) predates `http2 on;` (1.25),
    the compose image's syntax: that one line is dropped here."""
    conf = TEMPLATE.read_text()
    conf = conf.replace("${CLINIC_HOSTNAME}", HOST).replace("server web:8000;", f"server {upstream};")
    conf = conf.replace("listen 80 default_server;", f"listen 127.0.0.1:{http_port} default_server;")
    conf = conf.replace("listen 443 ssl default_server;", f"listen 127.0.0.1:{https_port} ssl default_server;")
    conf = conf.replace("/etc/nginx/certs/", f"{tmp}/certs/").replace("    http2 on;\n", "")
    conf = conf.replace("/var/log/nginx/access.log", f"{tmp}/access.log")
    site = tmp / "site.conf"
    site.write_text(conf)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    main = tmp / "nginx.conf"
    main.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n"
        f"  fastcgi_temp_path {tmp}/f; uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;\n"
        f"  include {site};\n}}\n"
    )
    return main


@pytest.fixture
def proxy(live_server, tmp_path: Path) -> Iterator[int]:
    if not Path(NGINX).exists():
        pytest.fail("These tests run Debian's nginx: apt-get install nginx-light (.ci/run does).", pytrace=False)
    (tmp_path / "certs").mkdir()
    subprocess.run(
        [shutil.which("openssl") or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={HOST}",
         "-keyout", str(tmp_path / "certs" / "privkey.pem"), "-out", str(tmp_path / "certs" / "fullchain.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    https_port, http_port = free_port(), free_port()
    main = _render(tmp_path, urlsplit(live_server.url).netloc, https_port, http_port)
    check = subprocess.run([NGINX, "-t", "-c", str(main)], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([NGINX, "-c", str(main)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield https_port
    finally:
        process.terminate()
        process.wait(timeout=20)


def _post_partly(port: int, path: str, declared: int, headers: dict[str, str] | None = None,
                 wait: float = 8.0) -> tuple[int, dict, bytes] | None:  # fmt: skip
    """POST declaring `declared` bytes, send 64 KiB of them, then read: (status, headers, body)
    of an answer that came while the rest was unsent, or None if the proxy kept waiting."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as raw, context.wrap_socket(
        raw, server_hostname=HOST
    ) as tls:
        lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {declared}",
                 "Content-Type: multipart/form-data; boundary=x", "Connection: close"]  # fmt: skip
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"\0" * 65536)
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            if not data:
                return None
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
    return status, {k.lower(): v for k, v in fields.items()}, body


def _length(data: bytes) -> int:
    head = data.partition(b"\r\n\r\n")[0].decode(errors="replace").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def _error(answer) -> dict:
    _, headers, body = answer
    assert headers["content-type"].startswith("application/json")
    return json.loads(body)["error"]


@pytest.fixture
def token(transactional_db, django_capture_on_commit_callbacks) -> tuple[str, int]:
    world = make_world("proxy", django_capture_on_commit_callbacks)
    return new_api_token(world.staff), world.case.pk


@pytest.mark.parametrize("path", ["/api/cases/1/scans/", "/cases/1/scans/", "/cases/new/", "/dicomweb/studies"])
def test_an_anonymous_upload_is_refused_before_its_body_is_read(proxy, token, path):
    answer = _post_partly(proxy, path, 200 * 2**20)
    assert answer is not None, "the proxy waited for the body: it would have spooled it"
    assert answer[0] == 401
    assert _error(answer)["code"] == "not_authenticated"


def test_a_forged_token_is_refused_like_no_token(proxy, token):
    answer = _post_partly(proxy, f"/api/cases/{token[1]}/scans/", 200 * 2**20, {"Authorization": "Token forged"})
    assert answer is not None
    assert answer[0] == 401


def test_a_large_body_anywhere_else_is_refused_at_once(proxy, token):
    for path in ("/login/", "/api/auth/token/", "/api/patients/"):
        answer = _post_partly(proxy, path, 50 * 2**20)
        assert answer is not None, path
        assert answer[0] == 413, path


def test_a_signed_in_client_may_send_a_large_body_to_the_upload_url(proxy, token):
    """With a valid token the proxy accepts the declared 200 MiB and waits to buffer it (no
    answer while it is unsent): the large cap is there for signed-in clients."""
    key, case_id = token
    assert _post_partly(proxy, f"/api/cases/{case_id}/scans/", 200 * 2**20, {"Authorization": f"Token {key}"},
                        wait=3.0) is None  # fmt: skip


def test_a_signed_in_upload_goes_through_the_proxy_to_django(proxy, token):
    import requests

    from tests.testkit.scans import png_bytes

    key, case_id = token
    response = requests.post(
        f"https://127.0.0.1:{proxy}/api/cases/{case_id}/scans/",
        headers={"Host": HOST, "Authorization": f"Token {key}"},
        files={"file": ("slice.png", png_bytes(), "image/png")},
        verify=False, timeout=60,  # noqa: S501 (the test's own self-signed certificate)
    )  # fmt: skip
    assert response.status_code in (201, 202), response.text


def test_the_access_log_carries_no_patient_name_search(proxy, tmp_path):
    """A patient-name search in the query string (and in the Referer) reaches Django through the
    proxy, and the proxy's access log keeps the method, path and status, never the name."""
    import requests

    response = requests.get(
        f"https://127.0.0.1:{proxy}/history/?q=Surname-Smithers",
        headers={"Host": HOST, "Referer": f"https://{HOST}/patients/?q=Surname-Smithers"},
        verify=False, allow_redirects=False, timeout=30,  # noqa: S501 (the test's own self-signed certificate)
    )  # fmt: skip
    assert response.status_code == 302  # Django answered: sign in first
    log = tmp_path / "access.log"
    deadline = time.monotonic() + 10
    while (not log.exists() or "/history/" not in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert '"GET /history/ HTTP/1.1" 302' in text, text
    assert "Smithers" not in text
    assert "q=" not in text
