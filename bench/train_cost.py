"""What a training epoch costs on this machine, per recipe, measured on a few real steps.

Times `train_on_batch` (after one warm-up step) for the head alone, blocks 13-14, and the
whole backbone, at the given input size, and scales to an epoch of the training split.
Also times the augmentation of one batch, which runs beside the steps in loader threads.

usage: python bench/train_cost.py [--size 224] [--batch 16] [--steps 4]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from mri.intake.decode import decode_gray
from mri.model.preprocessing import prepare, to_model_input
from training.augment import augment
from training.data import DEFAULT_DATA, list_samples, load_split

RECIPES = {"head only": None, "blocks 13-14": 13, "whole backbone": 1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    import keras

    from mri.model.definition import build_classifier, set_trainable_blocks

    train_scans = len(load_split()["train"])
    everything = list_samples(DEFAULT_DATA)
    samples = everything[:: max(1, len(everything) // args.batch)][: args.batch]
    stored = [(prepare(decode_gray(s.path.read_bytes()), 256).pixels * 255).astype(np.uint8) for s in samples]
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    batch = to_model_input(np.stack([augment(image, args.size, rng) for image in stored]))
    augment_s = time.perf_counter() - start
    labels = np.array([s.label for s in samples])
    steps_per_epoch = train_scans // args.batch
    print(f"{os.cpu_count()} CPU cores, input {args.size} px, batch {args.batch}, {train_scans} training scans")
    print(f"augmentation: {augment_s:.2f} s per batch (one thread)")
    for name, first_block in RECIPES.items():
        model = build_classifier(args.size)
        set_trainable_blocks(model, first_block)
        model.compile(optimizer=keras.optimizers.Adam(1e-4),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.train_on_batch(batch, labels)  # compile and warm up
        start = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(batch, labels)
        step = (time.perf_counter() - start) / args.steps
        print(f"{name:>15}: {step:.2f} s/step → {step * steps_per_epoch / 60:.1f} min per epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
