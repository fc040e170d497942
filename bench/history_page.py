"""History page render time with 10,000 cases, and its SQL query count.

Builds a throw-away SQLite database (or uses DATABASE_URL) with one clinic of N cases (default
10,000; about 1.5 scans per case, most with a prediction), then renders /history/ through the
whole Django stack (middleware, view, selectors, templates) for several pages and filters.
The query count must be the same at 1,000 and at 10,000 cases and on every page.

    .venv/bin/python bench/history_page.py [--cases 10000] [--repeat 15]
"""
from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@contextmanager
def django_bench(name: str, database_url: str | None) -> Iterator[Path]:
    """A throw-away folder (`name-…`: the SQLite file, media) and this process set up on a
    migrated database (the given one, else that file); yields the folder."""
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("DATABASE_URL", database_url or f"sqlite:///{workdir / (name + '.sqlite3')}")
        os.environ.setdefault("MEDIA_ROOT", str(workdir / "media"))
        os.environ["DJANGO_SETTINGS_MODULE"] = "clinic_platform.test_settings"
        import django

        django.setup()
        from django.core.management import call_command
        from django.test.utils import setup_test_environment

        setup_test_environment()  # allows the test client's host; nothing else changes
        call_command("migrate", verbosity=0)
        yield workdir


def _populate(n_cases: int, *, seed: int = 7) -> object:
    """Bulk rows (no files: the page never opens them). Returns the clinic's staff user."""
    from django.utils import timezone

    from apps.accounts.models import Clinic, Role, User
    from apps.cases.models import Case
    from apps.patients.models import Patient
    from apps.scans.models import Prediction, Scan, ScanStatus
    from mri.vocabulary import CLASS_NAMES

    rng = random.Random(seed)  # noqa: S311 (synthetic data, not secrets)
    clinic = Clinic.objects.create(name=f"Bench clinic {n_cases}")
    user = User.objects.create(username=f"bench-{n_cases}", clinic=clinic, role=Role.RADIOLOGIST)
    patients = Patient.objects.bulk_create(
        Patient(clinic=clinic, mrn=f"B{n_cases}-{i:06d}", name=f"Patient {i:05d}") for i in range(max(1, n_cases // 5))
    )
    now = timezone.now()
    cases = Case.objects.bulk_create(
        Case(clinic=clinic, patient=rng.choice(patients), created_by=user, title=f"Case {i}") for i in range(n_cases)
    )
    # Spread creation times over two years so date filters have something to cut.
    for i, case in enumerate(cases):
        case.created_at = now - timedelta(minutes=i * 97)
    Case.objects.bulk_update(cases, ["created_at"], batch_size=2000)

    statuses = [ScanStatus.DONE] * 8 + [ScanStatus.FAILED, ScanStatus.QUEUED]
    scans = []
    for case in cases:
        for _ in range(rng.choice((1, 1, 2))):
            scans.append(
                Scan(
                    case=case, uploaded_by=user, image="scans/bench.jpg", sha256="0" * 64, size_bytes=1,
                    width=512, height=512, format="JPEG", status=rng.choice(statuses),
                )
            )  # fmt: skip
    scans = Scan.objects.bulk_create(scans, batch_size=2000)
    predictions = []
    for scan in scans:
        if scan.status == ScanStatus.DONE:
            weights = [rng.random() for _ in CLASS_NAMES]
            total = sum(weights)
            probs = {name: w / total for name, w in zip(CLASS_NAMES, weights, strict=True)}
            predictions.append(
                Prediction(
                    scan=scan, label=max(probs, key=probs.get), probabilities=probs, model_version="bench",
                    heatmap="predictions/h.png", overlay="predictions/o.png", timings_ms={"total_ms": 100.0},
                )
            )  # fmt: skip
    Prediction.objects.bulk_create(predictions, batch_size=2000)
    # bulk_create sends no signals: store the worklist priorities once, as the migration did.
    from apps.cases.worklist import worklist_priority_refresh

    worklist_priority_refresh()
    return user


def _measure(client: object, query: dict[str, str], repeat: int) -> tuple[float, float, int, int]:
    """(median ms, p90 ms, SQL queries, rows on the page) for GET /history/?query."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    url = reverse("history")
    client.get(url, query)  # warm: template compilation, connection
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url, query)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.status_code
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, query)
    rows = len(response.context["page"].object_list)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))], len(ctx.captured_queries), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000, help="a second, smaller clinic for the query check")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    with django_bench("history-bench", args.database_url):
        from django.db import connection
        from django.test import Client

        t0 = time.perf_counter()
        big = _populate(args.cases)
        small = _populate(args.small, seed=8)
        print(f"database: {connection.vendor}; populated {args.cases} + {args.small} cases "
              f"in {time.perf_counter() - t0:.1f} s")

        pages = (args.cases + 24) // 25
        scenarios = [
            ("page 1", {}),
            ("page 2", {"page": "2"}),
            (f"page {pages // 2}", {"page": str(pages // 2)}),
            (f"page {pages} (last)", {"page": str(pages)}),
            ("label=glioma", {"label": "glioma"}),
            ("status=done, page 3", {"status": "done", "page": "3"}),
            ("search 'Patient 01'", {"q": "Patient 01"}),
            ("last 30 days", {"date_from": (datetime.date.today() - timedelta(days=30)).isoformat()}),
        ]
        client = Client()
        client.force_login(big)
        print(f"\n/history/ with {args.cases} cases (25 per page), {args.repeat} renders each")
        print(f"{'scenario':<26}{'median ms':>10}{'p90 ms':>9}{'queries':>9}{'rows':>6}")
        counts = set()
        for name, query in scenarios:
            median, p90, queries, rows = _measure(client, query, args.repeat)
            counts.add(queries)
            print(f"{name:<26}{median:>10.1f}{p90:>9.1f}{queries:>9}{rows:>6}")

        client.force_login(small)
        median, p90, small_queries, rows = _measure(client, {}, args.repeat)
        print(f"{f'page 1, {args.small} cases':<26}{median:>10.1f}{p90:>9.1f}{small_queries:>9}{rows:>6}")
        counts.add(small_queries)

    flat = len(counts) == 1
    print(f"\nquery count {'constant' if flat else 'VARIES'}: {sorted(counts)}")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
