"""A hostile upload corpus (tests/testkit/hostile.py) against the real upload path: every file
is refused with its own message and nothing is stored, the awkward-but-valid ones are accepted,
the web process's memory for checking each file is measured (a fresh process, the kernel's
high-water mark) and bounded, and over real HTTP an anonymous client streaming an oversized
body is refused before the body is read or spooled.

Zipped DICOM studies: zip bombs (declared total, one member, too many members) and a zip inside
a zip are refused the same way (ZIP_CORPUS)."""
from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.scans.models import Scan
from mri.intake.limits import MAX_UPLOAD_BYTES
from tests.testkit.data import api_token, stored_files, upload
from tests.testkit.hostile import (
    HostileFile,
    hostile_corpus,
    peak_memory,
    worst_accepted_jpeg,
    worst_accepted_png,
    zip_corpus,
)

CORPUS = hostile_corpus()
ZIP_CORPUS = zip_corpus()
# What checking one file may add to a web process at most (the worst accepted file, a 16 Mpx
# progressive JPEG, costs about 92 MiB: its decoder holds every DCT coefficient); a full decode
# of the worst accepted PNG alone would be 160 MiB, and an 8192² PNG used to cost 258 MiB.
WEB_MEMORY_BOUND_MIB = 128


@pytest.fixture
def api(north) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(north.staff)}")
    return client


@pytest.mark.parametrize("hostile", CORPUS + ZIP_CORPUS, ids=[f.name for f in CORPUS + ZIP_CORPUS])
def test_each_hostile_file_is_refused_with_its_message(api, north, media_root, hostile: HostileFile, broker):
    before = stored_files(media_root)
    response = api.post(
        reverse("api:case-scans", args=[north.case.pk]),
        {"file": upload(hostile.data, hostile.name, hostile.content_type)},
        format="multipart",
    )
    if hostile.message is None:
        assert response.status_code == 201, response.content[:500]
        return
    assert response.status_code == 400, response.content[:500]
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert hostile.name in error["message"]
    assert hostile.message in error["message"]
    assert north.case.scans.count() == 1
    assert stored_files(media_root) == before
    assert broker() == []


def test_web_memory_for_checking_a_file_is_bounded(tmp_path: Path):
    files = {f.name: f.data for f in CORPUS}
    files["worst-accepted.png"] = worst_accepted_png()
    files["worst-accepted.jpg"] = worst_accepted_jpeg()
    measured = peak_memory(files, "web", tmp_path)
    assert set(measured) == set(files)
    assert measured["worst-accepted.png"]["outcome"] == "accepted"
    assert measured["worst-accepted.jpg"]["outcome"] == "accepted"
    over = {name: row for name, row in measured.items() if row["growth_mib"] > WEB_MEMORY_BOUND_MIB}
    assert not over, over
    # The 40 Mpx PNG (160 MiB of pixels) is checked in a streaming pass, never decoded whole.
    assert measured["worst-accepted.png"]["growth_mib"] < 32, measured["worst-accepted.png"]


def _send_streaming(url: str, path: str, headers: dict[str, str], body_bytes: int) -> tuple[int, bytes, int]:
    """POST `body_bytes` of multipart body in 64 KiB pieces over a raw socket, stopping as soon as
    the server answers. Returns (status, response head and body so far, bytes sent)."""
    parts = urlsplit(url)
    boundary = "hostileboundary"
    preamble = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
                "Content-Type: image/png\r\n\r\n").encode()  # fmt: skip
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {body_bytes}\r\n{head}\r\n"
    ).encode() + preamble
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        # A small send buffer: on a busy machine the kernel would otherwise take megabytes of body
        # from the client before the server's answer arrives (CI saw 8 MiB), and `sent` would say
        # more about the buffers than about when the server stopped reading.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        sock.sendall(request)
        sock.setblocking(False)
        piece = b"\0" * 65536
        answer = b""
        deadline = time.monotonic() + 120
        while sent < body_bytes and time.monotonic() < deadline:
            try:
                answer += sock.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            try:
                sent += sock.send(piece)
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(30)
        # The head and the body may come in separate packets: read the whole answer.
        while not _complete(answer):
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer, sent


def _complete(answer: bytes) -> bool:
    """Whether `answer` holds the response head and as many body bytes as its Content-Length."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return True


def test_anonymous_oversized_upload_is_refused_before_the_body_is_read(live_server, north, settings, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(spool)
    path = reverse("api:case-scans", args=[north.case.pk])
    status, answer, sent = _send_streaming(live_server.url, path, {"Accept": "application/json"}, 40 << 20)
    assert status == 413, answer[:500]
    assert b'"too_large"' in answer or b"Sign in" in answer
    assert sent < 8 << 20, f"the client sent {sent} bytes before the answer"  # refused on the headers
    assert list(spool.iterdir()) == []  # nothing spooled
    assert Scan.objects.filter(case=north.case).count() == 1


def test_signed_in_upload_is_stopped_while_it_streams_past_the_file_limit(live_server, north, settings, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(spool)
    token = api_token(north.staff)
    path = reverse("api:case-scans", args=[north.case.pk])
    body = MAX_UPLOAD_BYTES + (8 << 20)  # one file 8 MiB over the limit, within the request limit
    status, answer, sent = _send_streaming(live_server.url, path, {"Authorization": f"Token {token}"}, body)
    assert status == 413, answer[:500]
    assert b"the limit for one scan" in answer
    assert sent < body, "the server waited for the whole body"
    time.sleep(0.5)
    assert list(spool.iterdir()) == []  # the partial temporary file is gone
    assert Scan.objects.filter(case=north.case).count() == 1
