"""Time per slice for a zipped 24-slice DICOM series, from upload to every slice done, with one
worker; the same 24 slices uploaded as the JPEGs they were made from are the baseline, in the
same run, on the same worker.

The series is built from real training scans with the test builders (tests/testkit/dicom.py),
in the transfer syntax asked for, zipped as a PACS exports it. Both uploads go through the
service the page and the API call (`scans_upload`): the request checks DICOM headers and stores
the zip; the worker's `ingest_study` job unpacks, decodes, de-identifies and renders it, then
the slices are analysed; the clock runs from the call until the last slice is done. A warm-up
JPEG scan runs first (the worker's pool process loads the model); it is not counted.

    .venv/bin/python bench/dicom_series.py [--slices 24] [--syntax jpeg2000-lossless]
Redis: REDIS_URL (db 14 is used and flushed) or a redis-server started on a free port.
Database: a temporary SQLite file, or --database-url (e.g. the PostgreSQL one).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.queue_throughput import _wait_done, bench_stack, worker_bench_args  # noqa: E402
from tests.testkit.processes import start_worker  # noqa: E402


def _unpacked_ids(studies: list, timeout: float) -> list[int]:
    """The scans a worker made of each study upload, once it has unpacked them."""
    from apps.scans.models import StudyUpload

    ids: list[int] = []
    deadline = time.monotonic() + timeout
    for study in studies:
        while (current := StudyUpload.objects.get(pk=study.pk)).status in ("received", "unpacking"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"study upload {study.pk} not unpacked")
            time.sleep(0.05)
        ids += list(current.scans.values_list("pk", flat=True))
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--syntax", default="explicit-le", help="a key of dicomdata.TRANSFER_SYNTAXES")
    parser.add_argument("--rounds", type=int, default=2, help="DICOM and JPEG uploads, alternated")
    args = worker_bench_args(parser)

    with bench_stack("dicom-bench", args.database_url) as stack:
        from django.core.files.uploadedfile import SimpleUploadedFile
        from django.db import connection

        from apps.cases.services import case_create
        from apps.patients.services import patient_create
        from apps.scans.models import Scan
        from apps.scans.services import scans_upload
        from tests.testkit import dicom as dicomdata

        user = stack.user
        patient = patient_create(created_by=user, mrn="D-1", name="Dicom Bench")
        labels = ("glioma", "notumor", "meningioma", "pituitary")
        jpegs = dicomdata.training_jpegs(args.slices, labels=labels)  # what the series is made from
        archive = dicomdata.series_zip(dicomdata.training_series(args.slices, labels=labels, key=args.syntax))

        def run(kind: str) -> tuple[float, float, list[int]]:
            case = case_create(created_by=user, patient=patient, title=kind)
            if kind == "dicom":
                uploads = [SimpleUploadedFile("series.zip", archive, "application/zip")]
            else:
                uploads = [SimpleUploadedFile(f"{i}.jpg", data, "image/jpeg") for i, data in enumerate(jpegs)]
            t0 = time.perf_counter()
            outcome = scans_upload(case=case, uploaded_by=user, uploads=uploads)
            stored = time.perf_counter() - t0
            ids = [scan.pk for scan in outcome.scans] + _unpacked_ids(outcome.studies, args.timeout)
            _wait_done(ids, args.timeout)
            return stored, time.perf_counter() - t0, ids

        worker = start_worker(env=stack.env, log_dir=stack.tmp, prefix="dicom-bench")
        timings: dict[str, list[tuple[float, float]]] = {"dicom": [], "jpeg": []}
        all_ids: list[int] = []
        try:
            warm_case = case_create(created_by=user, patient=patient, title="warm-up")
            warm = scans_upload(case=warm_case, uploaded_by=user, uploads=[SimpleUploadedFile("w.jpg", jpegs[0])])
            _wait_done([s.pk for s in warm.scans], args.timeout)
            for _ in range(args.rounds):
                for kind in ("dicom", "jpeg"):
                    stored, total, ids = run(kind)
                    timings[kind].append((stored, total))
                    all_ids += ids
        except BaseException:
            print(worker.log_tail(), file=sys.stderr)
            raise
        finally:
            worker.stop()

        failed = Scan.objects.filter(pk__in=all_ids).exclude(status="done").count()
        n = args.slices
        print(f"database: {connection.vendor}; broker: Redis; 1 worker, concurrency 1; {n} slices; "
              f"DICOM {args.syntax}, zipped ({len(archive) / 2**20:.1f} MB); {args.rounds} rounds")
        for kind in ("dicom", "jpeg"):
            stored = statistics.median(t[0] for t in timings[kind]) / n * 1000
            total = statistics.median(t[1] for t in timings[kind]) / n * 1000
            print(f"{kind:>5}: upload request {stored:.0f} ms/slice; "
                  f"upload → all done {total:.0f} ms/slice")
        ratio = statistics.median(t[1] for t in timings["dicom"]) / statistics.median(t[1] for t in timings["jpeg"])
        print(f"DICOM / JPEG, upload → all done: {ratio:.2f}×  ({failed} failed)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
