"""A whole study through the product: upload a series of N slices over the REST API, and time
the request and the wait until the study summary is complete (every slice analysed or
rejected), per study and per slice; the baseline is N × one `analyze()` in this process, in
the same run. DICOM goes as one zipped series (the test builders' real training scans in the
transfer syntax asked for, as a PACS exports them); JPEG as the same N slices in one
multipart request (the intake unzips DICOM only).

Real processes (tests/testkit/processes.py): Redis, gunicorn serving the API, one Celery
worker (concurrency 1) with the shipped model. The clock uses the public API only:
`POST /api/cases/{id}/scans/`, then `GET /api/cases/{id}/scans/` until the case holds N
slices, all finished; for a DICOM study it polls the study progress, `GET
/api/cases/{id}/studies/` (what the API docs tell a client to follow; `--poll case` polls `GET
/api/cases/{id}/` instead, which carries the same progress with every scan of the case, as
clients did before that answer existed), and reads the scans list once that says done. So it
measures today's intake (the request unpacks and stores the slices)
and an asynchronous one (the request stores the upload; a job splits it later) alike.

    .venv/bin/python bench/study_bench.py [--slices 20] [--kinds dicom jpeg] [--rounds 1]
                                          [--syntax explicit-le] [--lanes 2x4] [--database-url URL]
                                          [--t2] [--labels notumor]
`--t2 --labels notumor`: a "No tumour" T2 series, each slice's card opening on a tumour map.
`--lanes 1 2 2x4 2x8/16` runs the rounds once per worker setting (a worker started for each,
against the same baseline): LANES[xPER_CALL][/TASK] sets the worker's STUDY_ANALYSIS_LANES,
STUDY_LANE_BATCH (slices per `analyze_batch` call on a lane; 1 when not given: the worker
before its lanes took chunks) and SCAN_BATCH_SIZE (slices per task; the setting's default when
not given). `1` is the worker before its study tasks analysed slices side by side.
Redis: REDIS_URL (db 14 is used and flushed) or a redis-server started on a free port.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.queue_throughput import bench_stack, worker_bench_args  # noqa: E402
from tests.testkit.processes import gunicorn_server, start_worker  # noqa: E402

FINISHED = ("done", "failed", "rejected")
PASSWORD = "study-bench-password-1"  # noqa: S105 (a throw-away user of a temporary database)


def baseline_analyze_ms(slices: list[bytes]) -> float:
    """Median ms of one `analyze()` over these slices, in this process (model loaded, warmed)."""
    from workers.runtime import get_analyzer

    analyzer = get_analyzer()
    analyzer.analyze(slices[0])
    times = []
    for data in slices:
        start = time.perf_counter()
        analyzer.analyze(data)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def worker_setting(spec: str) -> str:
    """A `--lanes` value, checked: LANES[xPER_CALL][/TASK], e.g. 2, 2x4, 2x8/16."""
    worker_env(spec)
    return spec


def worker_env(spec: str) -> dict[str, str]:
    """The worker's environment for a `--lanes` value."""
    lanes_per_call, _, task = spec.partition("/")
    lanes, _, per_call = lanes_per_call.partition("x")
    env = {"STUDY_ANALYSIS_LANES": str(int(lanes)), "STUDY_LANE_BATCH": str(int(per_call or 1))}
    if task:
        env["SCAN_BATCH_SIZE"] = str(int(task))
    return env


def run_study(
    session, base: str, patient_id: int, files: list[tuple[str, bytes, str]], n: int, timeout: float,
    poll: str = "studies",
):
    """(request s, upload → summary complete s, statuses) for one study in a new case."""
    case = session.post(f"{base}/api/cases/", data={"patient": patient_id, "title": "study bench"}, timeout=30)
    case.raise_for_status()
    case_id = case.json()["id"]
    multipart = [("file", (name, data, mime)) for name, data, mime in files]
    start = time.perf_counter()
    answer = session.post(f"{base}/api/cases/{case_id}/scans/", files=multipart, timeout=timeout)
    requested = time.perf_counter() - start
    if answer.status_code not in (201, 202):
        raise RuntimeError(f"upload answered {answer.status_code}: {answer.text[:500]}")
    deadline = start + timeout
    while True:
        if not study_finished(session, base, case_id, poll):
            statuses: list[str] = []
        else:  # then the slices themselves, once (or every poll when the upload is no study)
            scans = session.get(f"{base}/api/cases/{case_id}/scans/", timeout=30).json()
            statuses = [scan["status"] for scan in scans]
        if len(statuses) >= n and all(s in FINISHED for s in statuses):
            total = time.perf_counter() - start
            print(f"  {n}-slice study: {where_the_time_went(case_id, n, total)}")
            return requested, total, statuses
        if time.perf_counter() > deadline:
            raise RuntimeError(f"case {case_id}: {len(statuses)} of {n} slices, {statuses.count('done')} done")
        time.sleep(0.5)  # each poll is a request on the same 2 cores: not too often


def study_finished(session, base: str, case_id: int, poll: str = "studies") -> bool:
    """What the API docs tell a client following a study to poll: `GET /api/cases/{id}/studies/`,
    the case's study uploads and their progress (`poll="case"`: the case itself, the same
    progress with every scan). True once every study upload is unpacked and all its slices
    analysed, or when the case has no study upload (JPEG slices: the caller polls the scans
    then); a failed or held study ends the bench."""
    if poll == "case":
        answer = session.get(f"{base}/api/cases/{case_id}/", timeout=30)
    else:
        answer = session.get(f"{base}/api/cases/{case_id}/studies/", timeout=30)
    answer.raise_for_status()
    studies = answer.json().get("studies", []) if poll == "case" else answer.json()
    stopped = [s["progress"] for s in studies if s["status"] in ("failed", "held")]
    if stopped:
        raise RuntimeError(f"case {case_id}: {'; '.join(stopped)}")
    return all(s["status"] not in ("received", "unpacking") and s["slices_done"] >= s["slices_total"] for s in studies)


def where_the_time_went(case_id: int, n: int, total: float) -> str:
    """The study's own timestamps (the database this process shares with the worker): the
    unpack job, the wait before the first slice is claimed, the slices' analysis, and the
    client's lag in seeing the end (its poll)."""
    from django.db.models import Max, Min

    from apps.scans.models import Scan, StudyUpload

    study = StudyUpload.objects.filter(case_id=case_id).first()
    span = Scan.objects.filter(case_id=case_id).aggregate(first=Min("started_at"), last=Max("finished_at"))
    if study is None or not (study.started_at and study.finished_at and span["first"] and span["last"]):
        return "no study timestamps"
    received = study.received_at
    analysed = (span["last"] - span["first"]).total_seconds()
    seen = total - (span["last"] - received).total_seconds()
    return (
        f"unpack job {(study.finished_at - study.started_at).total_seconds():.1f} s (started "
        f"{(study.started_at - received).total_seconds():.1f} s after the upload was stored); first slice "
        f"claimed {(span['first'] - study.finished_at).total_seconds():.2f} s after the unpack; slices "
        f"{analysed:.1f} s = {analysed / n * 1000:.0f} ms each; the end seen {seen:.1f} s later (poll)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--kinds", nargs="+", choices=("dicom", "jpeg"), default=["dicom", "jpeg"])
    parser.add_argument("--rounds", type=int, default=1, help="studies of each kind, alternated")
    parser.add_argument("--syntax", default="explicit-le", help="a key of tests/testkit/dicom.TRANSFER_SYNTAXES")
    parser.add_argument(
        "--lanes", nargs="+", default=["2x4"], type=worker_setting,
        help="the worker's LANES[xPER_CALL][/TASK] (STUDY_ANALYSIS_LANES, STUDY_LANE_BATCH, SCAN_BATCH_SIZE), in turn",
    )
    parser.add_argument(
        "--poll", nargs="+", choices=("studies", "case"), default=["studies"],
        help="what the client polls for a DICOM study's progress, in turn (case: GET /api/cases/{id}/)",
    )
    parser.add_argument(
        "--t2", action="store_true",
        help="the DICOM series says it is T2-weighted (a sequence the model is not validated for)",
    )  # fmt: skip
    parser.add_argument(
        "--labels", nargs="+", default=["glioma", "notumor", "meningioma", "pituitary"],
        help="the training scans' classes the slices are made of, in turn",
    )  # fmt: skip
    args = worker_bench_args(parser, timeout=1800.0)
    n = args.slices

    with bench_stack("study-bench", args.database_url) as stack:
        import requests
        from django.db import connection

        from apps.accounts.models import Role
        from apps.accounts.services import user_create
        from tests.testkit import dicom as dicomdata

        labels = tuple(args.labels)
        jpegs = dicomdata.training_jpegs(n, labels=labels)  # what the DICOM series is made from
        attributes = dicomdata.T2_ATTRIBUTES if args.t2 else None
        series = dicomdata.training_series(n, labels=labels, key=args.syntax, attributes=attributes)
        archive = dicomdata.series_zip(series)
        studies = {
            "dicom": [("series.zip", archive, "application/zip")],
            "jpeg": [(f"slice{i:03d}.jpg", data, "image/jpeg") for i, data in enumerate(jpegs)],
        }
        analyze_ms = baseline_analyze_ms(jpegs)  # before the worker starts: the cores are free
        user_create(clinic=stack.user.clinic, username="study-bench", password=PASSWORD, role=Role.CLINIC_STAFF)

        timings: dict[tuple[str, str, str], list[tuple[float, float]]] = {
            (lanes, poll, kind): [] for lanes in args.lanes for poll in args.poll for kind in args.kinds
        }
        not_done = 0
        with gunicorn_server(stack.env, stack.tmp / "gunicorn.log", "--workers", "1", "--timeout", "600") as base:
            session = requests.Session()
            token = session.post(
                f"{base}/api/auth/token/", data={"username": "study-bench", "password": PASSWORD}, timeout=30
            )
            token.raise_for_status()
            session.headers["Authorization"] = f"Token {token.json()['token']}"
            patient = session.post(f"{base}/api/patients/", data={"mrn": "S-1", "name": "Study Bench"}, timeout=30)
            patient.raise_for_status()
            patient_id = patient.json()["id"]
            for lanes in args.lanes:
                env = {**stack.env, **worker_env(lanes)}
                worker = start_worker(env=env, log_dir=stack.tmp, prefix=f"study-bench-{lanes.replace('/', '-')}")
                try:
                    # Warm-up, not counted: the worker's pool process imports TensorFlow, loads the model.
                    run_study(session, base, patient_id, studies["jpeg"][:1], 1, args.timeout)
                    for _ in range(args.rounds):
                        for poll in args.poll:
                            for kind in args.kinds:
                                print(f"  {lanes} lane(s), {kind}, polling {poll}:")
                                requested, total, statuses = run_study(
                                    session, base, patient_id, studies[kind], n, args.timeout, poll
                                )
                                timings[lanes, poll, kind].append((requested, total))
                                not_done += sum(s != "done" for s in statuses)
                except BaseException:
                    print(worker.log_tail(), file=sys.stderr)
                    raise
                finally:
                    worker.stop()

        baseline_s = n * analyze_ms / 1000
        print(f"database: {connection.vendor}; broker: Redis; gunicorn 1 process; 1 worker, concurrency 1; "
              f"{os.cpu_count()} CPU cores; {n} slices per study; DICOM {args.syntax} zipped "
              f"({len(archive) / 2**20:.1f} MB); {args.rounds} round(s)")
        print(f"baseline: one analyze() median {analyze_ms:.0f} ms in this process → {n} × analyze() = "
              f"{baseline_s:.1f} s")
        print(f"{'lanes':>8}{'poll':>8}{'study':>6}{'upload request':>16}{'→ summary complete':>20}"
              f"{'per slice':>11}{'× baseline':>12}")  # fmt: skip
        for (lanes, poll, kind), runs in timings.items():
            requested = statistics.median(t[0] for t in runs)
            total = statistics.median(t[1] for t in runs)
            print(f"{lanes:>8}{poll:>8}{kind:>6}{requested:>15.2f}s{total:>19.1f}s{total / n * 1000:>9.0f}ms"
                  f"{total / baseline_s:>11.2f}×")  # fmt: skip
        if not_done:
            print(f"{not_done} slice(s) finished other than done (failed or rejected)")
    return 1 if not_done else 0


if __name__ == "__main__":
    sys.exit(main())
