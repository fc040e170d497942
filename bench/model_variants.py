"""Model v2 candidates on the validation split, through the serving preprocessing: the head crop
(v1 / lit), test-time flip averaging, ensembles of model folders (every subset of two or more),
each model fed at other input sizes than it was trained at (`--eval-sizes`; Xception pools
globally, so the same weights run at 256/299 px without retraining), and the cost per scan.

Each variant's logits are computed once per (model, crop, flip) on the original files; the
temperature is fitted on the same split for each variant (as `calibrate` does for a shipped
model), then accuracy, macro-F1 and ECE are compared. Cost: median forward time per scan at
batch 1 on this machine, for 224/256/299 px inputs.

usage: python bench/model_variants.py [--models DIR ...] [--eval-sizes PX ...] [--limit N] [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from mri.card import DEFAULT_MODEL_DIR
from mri.model.preprocessing import model_batch, preprocess_scan
from mri.model.probabilities import calibrated_probabilities
from mri.model.store import load_classifier
from mri.vocabulary import CLASS_NAMES
from training.calibrate import fit_temperature
from training.data import DEFAULT_DATA, load_split, samples_from_keys
from training.metrics import summarize


def logits_for(model, blobs: list[bytes], size: int, crop: str, flip: bool, batch: int = 16) -> np.ndarray:
    rows = []
    for start in range(0, len(blobs), batch):
        pixels = model_batch([preprocess_scan(b, size, crop) for b in blobs[start : start + batch]])
        out = np.asarray(model.predict_on_batch(pixels), dtype=np.float64)
        if flip:
            out = 0.5 * (out + np.asarray(model.predict_on_batch(pixels[:, :, ::-1]), dtype=np.float64))
        rows.append(out)
    return np.concatenate(rows)


def headline(logits: np.ndarray, true: np.ndarray) -> dict:
    temperature = fit_temperature(logits, true)
    metrics = summarize(calibrated_probabilities(logits, temperature), true, CLASS_NAMES)
    return {
        "temperature": round(float(temperature), 4),
        **{k: round(float(metrics[k]), 5) for k in ("accuracy", "macro_f1", "ece_15", "nll")},
        "recall": {c: round(float(v["recall"]), 4) for c, v in metrics["per_class"].items()},
    }


def at_input_size(source, size: int):
    """The same weights in a classifier built for `size` px inputs."""
    from mri.model.definition import build_classifier

    model = build_classifier(size, head_units=source.get_layer("head_dense").units)
    model.set_weights(source.get_weights())
    return model


def forward_ms(model_dir: Path, size: int, repeats: int = 10) -> float:
    source, _card = load_classifier(model_dir)
    model = at_input_size(source, size)
    pixels = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    model.predict_on_batch(pixels)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_on_batch(pixels)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, nargs="*", default=[DEFAULT_MODEL_DIR])
    parser.add_argument(
        "--crops", nargs="*", default=["card"], help="head crops to try: v1, lit, card (each model's own)"
    )
    parser.add_argument("--limit", type=int, default=0, help="every k-th validation scan, about N (0: all)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[224, 256, 299], help="input sizes to time")
    parser.add_argument(
        "--eval-sizes", type=int, nargs="*", default=[], help="also score each model at these input sizes"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    samples = samples_from_keys(DEFAULT_DATA, load_split()["val"])
    if args.limit:
        samples = samples[:: max(1, len(samples) // args.limit)]
    true = np.array([s.label for s in samples])
    blobs = [s.path.read_bytes() for s in samples]
    report: dict = {"validation_scans": len(samples), "variants": {}, "forward_ms_batch1": {}}
    logits: dict[tuple[str, str, bool], np.ndarray] = {}
    for model_dir in args.models:
        model, card = load_classifier(model_dir)
        for crop in args.crops:
            for flip in (False, True):
                started = time.perf_counter()
                used = card.head_crop if crop == "card" else crop
                logits[(str(model_dir), crop, flip)] = logits_for(model, blobs, card.input_size, used, flip)
                name = f"{card.version} crop={used}{' +flip' if flip else ''}"
                report["variants"][name] = {
                    **headline(logits[(str(model_dir), crop, flip)], true),
                    "forward_passes_per_scan": 2 if flip else 1,
                    "seconds": round(time.perf_counter() - started, 1),
                }
                print(name, json.dumps(report["variants"][name]), flush=True)
        own_crop = card.head_crop
        for size in args.eval_sizes:
            if size == card.input_size:
                continue
            started = time.perf_counter()
            name = f"{card.version} crop={own_crop} at {size} px (trained at {card.input_size})"
            report["variants"][name] = {
                **headline(logits_for(at_input_size(model, size), blobs, size, own_crop, False), true),
                "forward_passes_per_scan": 1,
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(name, json.dumps(report["variants"][name]), flush=True)
    for members in (c for k in range(2, len(args.models) + 1) for c in itertools.combinations(args.models, k)):
        for crop in args.crops:
            for flip in (False, True):
                mean = np.mean([logits[(str(m), crop, flip)] for m in members], axis=0)
                names = " + ".join(m.name if m.name != "model" else m.parent.name for m in members)
                name = f"ensemble {names} crop={crop}{' +flip' if flip else ''}"  # card: each its own
                report["variants"][name] = {
                    **headline(mean, true),
                    "forward_passes_per_scan": len(members) * (2 if flip else 1),
                }
                print(name, json.dumps(report["variants"][name]), flush=True)
    for size in args.sizes:
        report["forward_ms_batch1"][size] = round(forward_ms(args.models[0], size), 1)
        print(f"forward at {size} px, batch 1: {report['forward_ms_batch1'][size]} ms", flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
