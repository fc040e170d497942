"""Per-slice analysis time at several batch sizes and analysis lanes: `Analyzer.analyze_batch`
on one study's slices, on one thread or on several at once (a CPU worker's study lanes,
STUDY_ANALYSIS_LANES), against `analyze` one slice at a time on one thread, in the same
process on the same scans.

Each round analyses the same `--slices` real scans in every configuration (lanes × batch; a
different order each round, so drift from other work on the machine does not favour one), and
reports the median per-slice wall time and its ratio to one lane at batch 1 (lower is faster),
and the model pass's per-slice share (forward and heatmap gradients) for one lane.

usage: python bench/analyze_batch.py [--slices 32] [--rounds 3] [--sizes 1,8,32] [--lanes 1,2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data import DEFAULT_DATA, list_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="1,8,32")
    parser.add_argument("--lanes", default="1,2", help="threads analysing at once (the first 1 is the baseline)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    lane_counts = [int(n) for n in args.lanes.split(",")]
    configs = [(lanes, size) for lanes in lane_counts for size in sizes]

    from mri.model.analyzer import Analyzer

    samples = sorted(list_samples(DEFAULT_DATA), key=lambda s: str(s.path))[:: 5712 // args.slices][: args.slices]
    scans = [s.path.read_bytes() for s in samples]
    analyzer = Analyzer()
    for size in sizes:  # warm up each batch shape once (TensorFlow picks kernels per shape)
        analyzer.analyze_batch(scans[:size])

    wall: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    model: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    for round_ in range(args.rounds):
        for lanes, size in configs[round_ % len(configs) :] + configs[: round_ % len(configs)]:
            chunks = [scans[i : i + size] for i in range(0, len(scans), size)]
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=lanes) as pool:
                results = [r for chunk in pool.map(analyzer.analyze_batch, chunks) for r in chunk]
            wall[lanes, size].append((time.perf_counter() - started) * 1000 / len(scans))
            model[lanes, size].append(statistics.mean(r.timings_ms["inference"] for r in results))

    base_wall, base_model = statistics.median(wall[configs[0]]), statistics.median(model[configs[0]])
    print(f"{len(scans)} real scans, {args.rounds} rounds, device {analyzer.device} ({analyzer.precision}), "
          f"model {analyzer.model_version}")  # fmt: skip
    print("| lanes | batch | per slice, whole analysis (ms) | ratio | per slice, model pass (ms) | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for lanes, size in configs:
        w, m = statistics.median(wall[lanes, size]), statistics.median(model[lanes, size])
        model_cells = f"{m:.1f} | {m / base_model:.2f}" if lanes == 1 else "- | -"  # overlapping calls share the cores
        print(f"| {lanes} | {size} | {w:.1f} | {w / base_wall:.2f} | {model_cells} |")


if __name__ == "__main__":
    main()
