"""What one decode of a scan costs, as a share of one `analyze()` in the same run: the work a
worker saves each time a scan is decoded once for both its burnt-in text check and its
analysis (workers/tasks.py, workers/study_lanes.py) instead of once for each.

Real training scans (JPEG, 512²) and the same slices as the 16-bit PNGs a study's unpack writes
(mri.intake.dicom.frames.png16); each figure the best of three, the median over the scans.

    .venv/bin/python bench/decode_share.py [--scans 24]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _best_ms(call, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=24)
    args = parser.parse_args()

    from mri.intake.decode import decode_timed
    from mri.intake.dicom.frames import png16
    from tests.testkit.dicom import gray_from_jpeg
    from tests.testkit.scans import real_scan_paths
    from workers.runtime import get_analyzer

    analyzer = get_analyzer()
    jpegs = [path.read_bytes() for path in real_scan_paths(args.scans)]
    pngs = []
    for data in jpegs:
        gray = gray_from_jpeg(data).astype(np.float64)
        pngs.append(png16((gray / max(gray.max(), 1.0) * 4095).astype(np.uint16)))
    analyzer.analyze(jpegs[0])  # warm-up: the graph is traced on the first call
    analyze_ms = statistics.median(_best_ms(lambda d=d: analyzer.analyze(d)) for d in jpegs)
    print(f"one analyze() (median of {len(jpegs)} scans, best of 3): {analyze_ms:.1f} ms")
    for kind, scans in (("JPEG", jpegs), ("16-bit PNG", pngs)):
        decode_ms = statistics.median(_best_ms(lambda d=d: decode_timed(d)) for d in scans)
        print(f"one decode, {kind}: {decode_ms:.2f} ms = {decode_ms / analyze_ms:.3f} x analyze()")


if __name__ == "__main__":
    main()
