"""Burnt-in text detector (mri/intake/burnt_text.py): false holds on real scans and cost per slice.

Runs `burnt_in_text` over a random sample of the training scans and over the whole external set
(real slices with no burnt-in names: every hold there is a false hold, or text the source
burnt in, listed so a person can look), then over copies of some of them with a name drawn in
(DejaVu Sans, as in the tests) to report how many are caught. Prints per-slice cost
(wall median/p90/mean, ms, and CPU ms including Tesseract's) for the real scans, and how many
slices pass the cheap pre-filter on to Tesseract.

`--batch 1 8`: the same, checked N slices at a time (`burnt_in_texts`, one Tesseract read per N
slices, as a study task's lanes do), in turn in the same run: the cost per slice is the call's
over N. With a name burnt in, the slice goes with N - 1 clean ones of the sample, which must
not be held for it (each word read goes back to its own slice).

usage: python bench/burnt_text.py [--training 300] [--seed 15] [--burnt 50] [--batch 1 8]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mri.intake import burnt_text
from mri.intake.burnt_text import burnt_in_texts
from mri.intake.decode import decode_gray_bounded
from training.data import DEFAULT_DATA  # ../shared/datasets/brain-mri/Training, or BRAIN_MRI_DIR

EXTERNAL = Path(DEFAULT_DATA).parent.parent / "brain-mri-external"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def _ocr_runs(gray: np.ndarray) -> int:
    """1 when the pre-filter passes the slice on to Tesseract (the expensive part), else 0."""
    u8 = (np.clip(gray, 0.0, 1.0) * 255).astype(np.uint8)
    mask = burnt_text._stroke_mask(u8)
    return int(bool(burnt_text.candidate_lines(mask, burnt_text._head(u8, mask))))


def _cpu_seconds() -> float:
    """This process's CPU time (Tesseract reads in it) plus any finished children's: less
    sensitive than the wall clock to a machine shared with other work."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _run(files: list[Path], batch: int) -> tuple[list[tuple[str, str]], list[float], list[float], int]:
    holds, costs, cpu, ocr = [], [], [], 0
    for first in range(0, len(files), batch):
        chunk = files[first : first + batch]
        grays = [decode_gray_bounded(path.read_bytes()) for path in chunk]
        ocr += sum(_ocr_runs(gray) for gray in grays)
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        texts = burnt_in_texts(grays)
        costs.extend([(time.perf_counter() - start) * 1000 / len(chunk)] * len(chunk))
        cpu.extend([(_cpu_seconds() - start_cpu) * 1000 / len(chunk)] * len(chunk))
        holds.extend((path.name, text) for path, text in zip(chunk, texts, strict=True) if text)
    return holds, costs, cpu, ocr


def _report(name: str, files: list[Path], batch: int) -> None:
    holds, costs, cpu, ocr = _run(files, batch)
    costs.sort()
    print(
        f"{name}, {batch} at a time: {len(holds)} held of {len(files)} ({100 * len(holds) / max(len(files), 1):.1f}%); "
        f"{ocr} passed the pre-filter to OCR; "
        f"ms/slice median {statistics.median(costs):.1f}, p90 {costs[int(0.9 * (len(costs) - 1))]:.1f}, "
        f"mean {statistics.fmean(costs):.1f}, max {costs[-1]:.1f}; CPU ms/slice mean {statistics.fmean(cpu):.1f}"
    )
    for file_name, text in holds:
        print(f"  held {file_name}: {text!r}")


def _burnt(path: Path, font: ImageFont.FreeTypeFont) -> np.ndarray:
    image = Image.fromarray((decode_gray_bounded(path.read_bytes()) * 255).astype(np.uint8))
    ImageDraw.Draw(image).text((6, 6), "DOE, JANE 1970-01-01", fill=255, font=font)
    return np.asarray(image, np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--training", type=int, default=300)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--burnt", type=int, default=50)
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="slices per call, in turn")
    args = parser.parse_args()
    rng = random.Random(args.seed)  # noqa: S311 (a reproducible sample, not a secret)
    training = sorted(Path(DEFAULT_DATA).glob("*/*.jpg"))
    external = sorted(EXTERNAL.glob("*/*.png"))
    sample = rng.sample(training, min(args.training, len(training)))
    font = ImageFont.truetype(FONT, 14)
    burnt = rng.sample(sample + external, args.burnt)
    for batch in args.batch:
        _report("training sample", sample, batch)
        _report("external set", external, batch)
        caught = wrongly_held = 0
        for i, path in enumerate(burnt):
            clean = [sample[(i * batch + j) % len(sample)] for j in range(batch - 1)]
            grays = [_burnt(path, font)] + [decode_gray_bounded(p.read_bytes()) for p in clean]
            texts = burnt_in_texts(grays)
            caught += bool(texts[0])
            wrongly_held += sum("DOE" in text or "JANE" in text for text in texts[1:])
        print(f"name burnt in (14 px, top left), {batch} at a time: {caught} of {len(burnt)} caught; "
              f"its name given to a clean neighbour: {wrongly_held}")

if __name__ == "__main__":
    main()
