"""Where a study's time goes inside the worker: the study job's steps timed one by one, in this
process (no Celery, no web server), on the same zipped DICOM series as bench/study_bench.py.

The unpack (`ingest_study`), then each batch task (`analyze_scans`, SCAN_BATCH_SIZE slices) is
called as the worker calls it, with its steps wrapped in clocks: claim, read, burnt-in text
check, `analyze()`, storing (of which the stored worklist priority's refreshes), and the SQL
queries per slice. The baseline is one `analyze()` per slice in the same process, same run.

    .venv/bin/python bench/study_steps.py [--slices 60] [--syntax explicit-le] [--sequence t2] [--labels notumor]

`--sequence`: the study's scans recorded as that sequence after the unpack (as a series with those
DICOM attributes would be): on one the model is not validated for (t2, flair, t1), each "No tumour"
card opens on the likeliest tumour's map, which the worker stores with the analysis (`explain`,
timed, is the step it costs when the analysis did not make it).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.queue_throughput import bench_stack  # noqa: E402

# text_check: the task's own wait for the check (all of it when the check runs in line);
# text_work: the check's own time, on the task's text-check thread where it has one.
# lane_decode: a CPU lane's one decode of each slice, for its text check and its analysis.
# explain: the opening heatmap computed after the analysis (workers/tasks.py, _store_opening_heatmap).
STEPS = ("claim", "read", "text_check", "analyze", "store", "priority", "text_work", "lane_decode", "explain")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=60)
    parser.add_argument("--queries", action="store_true", help="print the SQL of the first batch task")
    parser.add_argument("--syntax", default="explicit-le", help="a key of tests/testkit/dicom.TRANSFER_SYNTAXES")
    parser.add_argument("--sequence", default="", help="record the scans as this sequence (mri.intake.sequence)")
    parser.add_argument(
        "--labels", nargs="+", default=["glioma", "notumor", "meningioma", "pituitary"],
        help="the training scans' classes the slices are made of, in turn",
    )  # fmt: skip
    args = parser.parse_args()
    n = args.slices

    with bench_stack("study-steps", None) as stack:
        from django.conf import settings
        from django.core.files.uploadedfile import SimpleUploadedFile
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        import apps.cases.signals as case_signals
        import apps.cases.worklist as worklist
        from apps.cases.services import case_create
        from apps.patients.services import patient_create
        from apps.scans.models import Scan
        from apps.scans.services import scans_upload
        from tests.testkit import dicom as dicomdata
        from workers import tasks
        from workers.runtime import get_analyzer

        labels = tuple(args.labels)
        archive = dicomdata.series_zip(dicomdata.training_series(n, labels=labels, key=args.syntax))
        user = stack.user
        case = case_create(created_by=user, patient=patient_create(created_by=user, mrn="T-1", name="Study Steps"))
        analyzer = get_analyzer()

        spent: dict[str, float] = defaultdict(float)

        def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*a: Any, **k: Any) -> Any:
                started = time.perf_counter()
                try:
                    return function(*a, **k)
                finally:
                    spent[name] += time.perf_counter() - started

            return wrapper

        class TimedAnalyzer:
            batch_preferred = analyzer.batch_preferred
            model_version = analyzer.model_version
            analyze = staticmethod(timed("analyze", analyzer.analyze))
            analyze_batch = staticmethod(timed("analyze", analyzer.analyze_batch))
            explain = staticmethod(timed("explain", analyzer.explain))

        tasks._get_analyzer = lambda: TimedAnalyzer  # type: ignore[assignment]
        for name in ("claim", "read", "store"):
            setattr(tasks, f"_{name}", timed(name, getattr(tasks, f"_{name}")))
        tasks._held_for_text = timed("text_check", tasks._held_for_text)
        for name in ("_text_in", "_texts_in"):  # one slice's check; a lane's chunk's (per chunk)
            if hasattr(tasks, name):
                setattr(tasks, name, timed("text_work", getattr(tasks, name)))
        import workers.study_lanes as study_lanes

        if hasattr(study_lanes, "decode_timed"):  # since each slice on a lane is decoded once
            study_lanes.decode_timed = timed("lane_decode", study_lanes.decode_timed)
        # Where it is called from: the signals (an older layout imports it there) or worklist.py.
        for module in (case_signals, worklist):
            if hasattr(module, "worklist_priority_refresh"):
                module.worklist_priority_refresh = timed("priority", module.worklist_priority_refresh)

        # The unpack's parts: the originals' files decoded and split (the slices' files stored
        # on the task's thread as they come: `_new_scan`), then the one commit of every scan.
        import apps.scans.services.upload as upload_service
        import apps.scans.studies as studies

        studies.unpack_source = timed("unpack_files", studies.unpack_source)
        upload_service._new_scan = timed("unpack_store", upload_service._new_scan)

        uploads = [SimpleUploadedFile("series.zip", archive, "application/zip")]
        (study,) = scans_upload(case=case, uploaded_by=user, uploads=uploads).studies
        started, started_cpu = time.perf_counter(), time.process_time()
        tasks.ingest_study(study.pk)
        unpack_s = time.perf_counter() - started
        unpack_cores = (time.process_time() - started_cpu) / unpack_s  # CPU time of every thread
        ids = list(Scan.objects.filter(study_upload=study).order_by("pk").values_list("pk", flat=True))
        if args.sequence:
            Scan.objects.filter(pk__in=ids).update(sequence=args.sequence)
        analyzer.analyze(Scan.objects.get(pk=ids[0]).image.read())  # warm, as a worker is after its first scan

        size = max(1, settings.SCAN_BATCH_SIZE)
        started = time.perf_counter()
        queries: list[str] = []  # per task: CaptureQueriesContext keeps 9,000 at most
        for start in range(0, len(ids), size):
            with CaptureQueriesContext(connection) as captured:
                tasks.analyze_scans(ids[start : start + size])
            queries += [query["sql"] for query in captured.captured_queries]
            if start == 0 and args.queries:
                print("\n".join(sql[:150] for sql in queries))
        tasks_s = time.perf_counter() - started

        baseline = []
        for scan in Scan.objects.filter(pk__in=ids):
            data = scan.image.read()
            begun = time.perf_counter()
            analyzer.analyze(data)
            baseline.append((time.perf_counter() - begun) * 1000)
        analyze_ms = statistics.median(baseline)

        # The study bench's progress request (every 0.5 s while a study is analysed), on the 2
        # cores the worker uses: its cost with every slice analysed.
        from rest_framework.test import APIClient

        from tests.testkit.data import api_token

        client = APIClient(SERVER_NAME="localhost")
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
        polls = []
        for _ in range(5):
            begun = time.perf_counter()
            answer = client.get(f"/api/cases/{case.pk}/scans/")
            assert answer.status_code == 200, answer.content[:300]
            polls.append((time.perf_counter() - begun) * 1000)

        statuses = list(Scan.objects.filter(pk__in=ids).values_list("status", flat=True))
        per = {name: spent[name] * 1000 / len(ids) for name in STEPS}
        print(f"{len(ids)} slices ({statuses.count('done')} done); batches of {size}; {connection.vendor}")
        print(f"unpack (ingest_study): {unpack_s:.2f} s, {unpack_cores:.2f} cores busy on average; "
              f"files decoded and split {spent['unpack_files']:.2f} s (of which the slices' files stored "
              f"{spent['unpack_store']:.2f} s), the rest (scans committed, tasks published) "
              f"{unpack_s - spent['unpack_files']:.2f} s")
        print(f"analyze_scans tasks: {tasks_s:.2f} s = {tasks_s * 1000 / len(ids):.0f} ms/slice; "
              f"{len(queries) / len(ids):.1f} SQL queries/slice")
        other = tasks_s * 1000 / len(ids) - sum(per[name] for name in STEPS[:5])
        print("per slice, ms: " + ", ".join(f"{name} {per[name]:.1f}" for name in STEPS)
              + f" (priority and explain: inside store; text_work: on its thread where it has one; lane_decode: on the "
              f"lanes); other {other:.1f}")
        print(f"GET /api/cases/{{id}}/scans/ ({len(ids)} scans, the study bench's poll): "
              f"median {statistics.median(polls):.0f} ms")
        print(f"baseline one analyze() median {analyze_ms:.0f} ms; unpack + tasks = "
              f"{(unpack_s + tasks_s) / (len(ids) * analyze_ms / 1000):.2f}× ({len(ids)} × analyze())")
    return 0


if __name__ == "__main__":
    sys.exit(main())
