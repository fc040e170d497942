"""What the opening heatmap costs a worker. For an unreassuring "No tumour" (Prediction.heatmap_label)
the card opens on the likeliest tumour class's map. The worker gets it from the analysis's own
pass (`analyze(data, unvalidated=True)`: a second backward pass to the heatmap's layer), or,
when the analysis did not make it, from `explain()` after `analyze()` (workers/tasks.py,
_store_opening_heatmap). Times the three on the same real "No tumour" scans in this process,
interleaved, and prints each as a ratio of `analyze()`.

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

from mri.vocabulary import CLASS_NAMES, NO_TUMOUR
from training.data import DEFAULT_DATA, list_samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=12, help="real scans, spread over the four classes")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from workers.runtime import get_analyzer

    samples = list_samples(DEFAULT_DATA)
    healthy = [sample for sample in samples if CLASS_NAMES[sample.label] == NO_TUMOUR]
    datas = [healthy[i].path.read_bytes() for i in range(0, len(healthy), max(1, len(healthy) // args.scans))]
    datas = datas[: args.scans]
    analyzer = get_analyzer()
    for data in datas[:2]:  # warm every path (tracing, caches)
        analyzer.analyze(data)
        analyzer.analyze(data, unvalidated=True)
        analyzer.explain(data, "glioma")
    times: dict[str, list[float]] = {"analyze": [], "with_map": [], "explain": []}
    made = 0
    for _ in range(args.rounds):
        for data in datas:
            started = time.perf_counter()
            analyzer.analyze(data)
            times["analyze"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            made += analyzer.analyze(data, unvalidated=True).tumour_heatmap is not None
            times["with_map"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            analyzer.explain(data, "glioma")
            times["explain"].append((time.perf_counter() - started) * 1000)
    analyse, with_map, explain = (statistics.median(times[name]) for name in ("analyze", "with_map", "explain"))
    print(f"{len(datas)} 'No tumour' training scans × {args.rounds} rounds ({made} analyses made the map), "
          f"medians: analyze() {analyse:.1f} ms")
    print(f"  analyze(unvalidated=True), the map from the same pass: {with_map:.1f} ms = "
          f"{with_map / analyse:.2f} × analyze()")
    print(f"  analyze() then explain(): + {explain:.1f} ms = {(analyse + explain) / analyse:.2f} × analyze()")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
