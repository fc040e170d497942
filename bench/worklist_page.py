"""Worklist render time with 10,000 unsigned cases, against /history/ page 1 in the same run.

Uses bench/history_page.py's synthetic clinic (about 1.5 scans per case, random calibrated
probabilities, so many low-confidence results; nothing signed, so most cases are on the
worklist). Renders /worklist/ (page, filters), GET /api/worklist/ and the dashboard (its counts)
through the whole Django stack and prints each as a ratio of /history/ page 1.

    .venv/bin/python bench/worklist_page.py [--cases 10000] [--repeat 10] [--database-url URL]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.history_page import _populate, django_bench  # noqa: E402


def _measure(client: object, url: str, query: dict[str, str], repeat: int) -> tuple[float, int]:
    """(median ms, SQL queries) for GET url?query."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url, query)  # warm
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url, query)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as ctx:
        client.get(url, query)
    return statistics.median(times), len(ctx.captured_queries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    with django_bench("worklist-bench", args.database_url):
        from django.db import connection
        from django.test import Client

        from apps.cases.worklist import case_worklist_counts

        user = _populate(args.cases)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        counts = case_worklist_counts(user=user)
        print(f"database: {connection.vendor}; {args.cases} cases, {counts['total']} on the worklist "
              f"({counts['low_confidence_tumour']} low-confidence tumour, {counts['tumour']} tumour)")
        client = Client()
        client.force_login(user)
        baseline, baseline_queries = _measure(client, "/history/", {}, args.repeat)
        last = str((counts["total"] + 24) // 25)
        scenarios = [
            ("/worklist/ page 1", "/worklist/", {}),
            (f"/worklist/ page {last} (last)", "/worklist/", {"page": last}),
            ("/worklist/ confidence=low", "/worklist/", {"confidence": "low"}),
            ("/worklist/ label=glioma", "/worklist/", {"label": "glioma"}),
            ("/worklist/ mine=1", "/worklist/", {"mine": "1"}),
            ("/api/worklist/ page 1", "/api/worklist/", {}),
            ("/ (dashboard, counts)", "/", {}),
        ]
        print(f"\n{'scenario':<32}{'median ms':>10}{'queries':>9}{'× history p1':>14}")
        print(f"{'/history/ page 1 (baseline)':<32}{baseline:>10.1f}{baseline_queries:>9}{1.0:>14.2f}")
        for name, url, query in scenarios:
            median, queries = _measure(client, url, query, args.repeat)
            print(f"{name:<32}{median:>10.1f}{queries:>9}{median / baseline:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
