"""What the opening heatmap costs a worker: for an unreassuring "No tumour" (Prediction.heatmap_label)
the worker runs `explain()` for the likeliest tumour class after `analyze()` (workers/tasks.py,
_store_opening_heatmap). Times both on the same real scans in this process, interleaved, and
prints `explain()` as a ratio of `analyze()`: the extra share of a slice's time, for those slices only.

usage: python bench/opening_heatmap.py [--scans 12] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data import DEFAULT_DATA, list_samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=12, help="real scans, spread over the four classes")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from workers.runtime import get_analyzer

    samples = list_samples(DEFAULT_DATA)
    datas = [samples[i].path.read_bytes() for i in range(0, len(samples), max(1, len(samples) // args.scans))]
    datas = datas[: args.scans]
    analyzer = get_analyzer()
    for data in datas[:2]:  # warm both paths (tracing, caches)
        analyzer.analyze(data)
        analyzer.explain(data, "glioma")
    analyse_ms, explain_ms = [], []
    for _ in range(args.rounds):
        for data in datas:
            started = time.perf_counter()
            analyzer.analyze(data)
            analyse_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            analyzer.explain(data, "glioma")
            explain_ms.append((time.perf_counter() - started) * 1000)
    analyse, explain = statistics.median(analyse_ms), statistics.median(explain_ms)
    print(f"{len(datas)} scans × {args.rounds} rounds, medians: analyze() {analyse:.1f} ms, "
          f"explain() {explain:.1f} ms = {explain / analyse:.2f} × analyze()")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
