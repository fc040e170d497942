"""Serving a scan from the S3 bucket: streamed through the clinic-checked view, or redirected to
a presigned URL (valid 30 s) that the browser then fetches from the object store itself.

Both paths in one process against a real SeaweedFS, on the same real scan and overlay, rounds
interleaved: (a) stream: GET /media/scans/<id>/image through Django (test client: the clinic
check, the object's HEAD and GET from S3, the bytes through the view); (b) presign: the same view
with MEDIA_PRESIGNED_REDIRECT on (the clinic check, a signed URL, no S3 call, a 302), then the
client's own GET of that URL from S3.
The figure to compare is the per-request time of (a) against (b)'s two steps together.

    .venv/bin/python bench/media_serving.py [--rounds 30]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.testkit.processes import seaweedfs_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="media-bench-") as tmp, seaweedfs_server(Path(tmp) / "s3") as s3:
        os.environ.update(s3.env())
        os.environ.update({
            "DJANGO_SETTINGS_MODULE": "clinic_platform.test_settings", "CELERY_BROKER_URL": "memory://",
            "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3", "LOG_LEVEL": "WARNING",
            "DJANGO_ALLOWED_HOSTS": "testserver",
        })  # fmt: skip
        os.environ.pop("REDIS_URL", None)
        import django

        django.setup()
        import requests
        from django.core.management import call_command
        from django.test import Client, override_settings
        from django.urls import reverse

        call_command("migrate", verbosity=0)
        from contextlib import contextmanager

        from tests.testkit.data import make_world

        @contextmanager
        def run_now(execute: bool = True):
            yield

        world = make_world("bench", run_now)
        client = Client()
        client.force_login(world.staff)

        def stream(kind: str) -> float:
            started = time.perf_counter()
            response = client.get(reverse(f"scans:{kind}", args=[world.scan.pk]))
            body = b"".join(response.streaming_content)
            assert response.status_code == 200
            assert body
            return time.perf_counter() - started

        def presign(kind: str) -> float:
            started = time.perf_counter()
            with override_settings(MEDIA_PRESIGNED_REDIRECT=True):
                response = client.get(reverse(f"scans:{kind}", args=[world.scan.pk]))  # the same view
            assert response.status_code == 302
            body = requests.get(response["Location"], timeout=10).content  # signed, 30 s
            assert body
            return time.perf_counter() - started

        for kind in ("image", "overlay"):
            stream(kind), presign(kind)  # warm connections
            times = {"stream": [], "presign": []}
            for i in range(args.rounds):
                for name in (("stream", "presign") if i % 2 else ("presign", "stream")):
                    times[name].append((stream if name == "stream" else presign)(kind))
            size = len(b"".join(client.get(reverse(f"scans:{kind}", args=[world.scan.pk])).streaming_content))
            s, p = statistics.median(times["stream"]) * 1000, statistics.median(times["presign"]) * 1000
            print(f"{kind} ({size / 1024:.0f} KiB): stream {s:.1f} ms, presigned URL + direct GET {p:.1f} ms,"
                  f" stream/presign {s / p:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
