"""Per-slice analysis time at several batch sizes: `Analyzer.analyze_batch` on one study's
slices against `analyze` one slice at a time (batch 1), in the same process on the same scans.

Each round analyses the same `--slices` real scans in batches of 1, 8 and 32 (a different order
of sizes each round, so drift from other work on the machine does not favour one size), and
reports the median per-slice time and its ratio to batch 1, split into the model pass (forward
and Grad-CAM gradient) and the whole analysis (decode, preprocessing, model, maps, overlay PNG).

usage: python bench/analyze_batch.py [--slices 32] [--rounds 3] [--sizes 1,8,32]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="1,8,32")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from mri.model.analyzer import Analyzer

    samples = sorted(list_samples(DEFAULT_DATA), key=lambda s: str(s.path))[:: 5712 // args.slices][: args.slices]
    scans = [s.path.read_bytes() for s in samples]
    analyzer = Analyzer()
    for size in sizes:  # warm up each batch shape once (TensorFlow picks kernels per shape)
        analyzer.analyze_batch(scans[:size])

    wall: dict[int, list[float]] = {size: [] for size in sizes}
    model: dict[int, list[float]] = {size: [] for size in sizes}
    for round_ in range(args.rounds):
        order = sizes[round_ % len(sizes) :] + sizes[: round_ % len(sizes)]
        for size in order:
            started = time.perf_counter()
            results = []
            for i in range(0, len(scans), size):
                results += analyzer.analyze_batch(scans[i : i + size])
            wall[size].append((time.perf_counter() - started) * 1000 / len(scans))
            model[size].append(statistics.mean(r.timings_ms["inference"] for r in results))

    base_wall, base_model = statistics.median(wall[sizes[0]]), statistics.median(model[sizes[0]])
    print(f"{len(scans)} real scans, {args.rounds} rounds, device {analyzer.device}, model {analyzer.model_version}")
    print("| batch | per slice, whole analysis (ms) | ratio | per slice, model pass (ms) | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for size in sizes:
        w, m = statistics.median(wall[size]), statistics.median(model[size])
        print(f"| {size} | {w:.1f} | {w / base_wall:.2f} | {m:.1f} | {m / base_model:.2f} |")


if __name__ == "__main__":
    main()
