"""The GPU side of model v2, run on a lent machine (Keras on JAX) from a copy of this code.

    python scripts/gpu_v2.py bench --model models/brain-xception --out OUT
        serving forward + Grad-CAM per slice at batch 1, 8, 32 (224 px) and at 256/299 px
    python scripts/gpu_v2.py train --pack A B --model models/brain-xception --seeds 1337 2024 --out OUT
        fine-tune the shipped model on the lit-crop training pack, one run per seed; writes the
        fine-tuned layers (training.partial) and each run's history, nothing else (transfer limits)

`--smoke` trains on 64 scans for one short epoch at 96 px, to test this script on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def serving_parts(weights: list, size: int):
    """The shipped classifier split at the Grad-CAM layer: (backbone, head, their variables)."""
    import keras

    from mri.model.definition import CAM_LAYER, build_classifier

    # The head's width is the logits kernel's first dimension (the card's head_units).
    model = build_classifier(size, head_units=int(weights[-2].shape[0]))
    model.set_weights(weights)
    features = model.get_layer(CAM_LAYER).output
    backbone = keras.Model(model.inputs, features)
    head_in = keras.Input(features.shape[1:])
    x = head_in
    for name in ("head_pool", "head_dense", "head_dropout", "logits"):
        x = model.get_layer(name)(x)
    head = keras.Model(head_in, x)

    def variables(part):
        return [v.value for v in part.trainable_variables], [v.value for v in part.non_trainable_variables]

    return backbone, head, (variables(backbone), variables(head))


def bench(model_dir: Path, out: Path, smoke: bool = False) -> None:
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    from mri.card import read_card
    from mri.model.store import verified_weights

    weights = verified_weights(model_dir, read_card(model_dir))
    results = {"device": str(jax.devices()[0].device_kind), "backend": keras.backend.backend(), "rows": []}
    plan = ((224, (1, 2)),) if smoke else ((224, (1, 8, 32)), (256, (32,)), (299, (32,)))
    for size, batches in plan:
        backbone, head, params = serving_parts(weights, size)
        serve = jax.jit(_serving_step(backbone, head))

        for batch in batches:
            pixels = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)), jnp.float32)
            started = time.perf_counter()
            jax.block_until_ready(serve(params, pixels))
            compile_s = time.perf_counter() - started
            times = []
            for _ in range(2 if smoke else 30):
                started = time.perf_counter()
                jax.block_until_ready(serve(params, pixels))
                times.append(time.perf_counter() - started)
            median = float(np.median(times)) * 1000
            row = {
                "input": size,
                "batch": batch,
                "ms_per_batch": round(median, 3),
                "ms_per_slice": round(median / batch, 3),
                "first_call_s": round(compile_s, 2),
            }
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    (out / "gpu_serving_bench.json").write_text(json.dumps(results, indent=2))


def _serving_step(backbone, head):
    """Logits and Grad-CAM of the predicted class for a batch, as the workers compute them."""
    import jax
    import jax.numpy as jnp

    def serve(params, pixels):
        (b_train, b_fixed), (h_train, h_fixed) = params
        maps, _ = backbone.stateless_call(b_train, b_fixed, pixels, training=False)
        logits, pullback = jax.vjp(lambda f: head.stateless_call(h_train, h_fixed, f, training=False)[0], maps)
        (grads,) = pullback(jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1], dtype=logits.dtype))
        cam = jax.nn.relu((maps * grads.mean(axis=(1, 2))[:, None, None, :]).sum(-1))
        return logits, cam

    return serve


def train_seeds(packs: list[Path], model_dir: Path, seeds: list[int], epochs: int, out: Path, smoke: bool) -> None:
    from training.pack import load_pack
    from training.partial import save_trained_layers
    from training.train import TrainConfig, train

    pack = load_pack(packs)
    if smoke:
        keep = set(range(0, len(pack.keys), max(1, len(pack.keys) // 64)))
        pack.split = [part if i in keep else "unused" for i, part in enumerate(pack.split)]
    summary = {"pack_scans": int((pack.indices("train")).size), "head_crop": pack.head_crop, "runs": []}
    for seed in seeds:
        config = TrainConfig(
            input_size=96 if smoke else 224,
            batch_size=8 if smoke else 32,
            head_epochs=0,
            finetune_epochs=1 if smoke else epochs,
            first_block=12,
            finetune_lr=1e-4,
            seed=seed,
            workers=2 if smoke else 14,
            mixed_precision=not smoke,
            head_crop=pack.head_crop,
            init_model=str(model_dir),
            verbose=2,
        )
        run_dir = Path(tempfile.mkdtemp(prefix=f"v2-run-{seed}-"))
        started = time.monotonic()
        model = train(pack, run_dir, config, None)
        minutes = (time.monotonic() - started) / 60
        files = save_trained_layers(model, out / f"v2-seed{seed}")
        history = (run_dir / "history.csv").read_text()
        summary["runs"].append(
            {
                "seed": seed,
                "minutes": round(minutes, 2),
                "files": [f.name for f in files],
                "config": config.__dict__,
                "history_csv": history,
            }
        )
        print(json.dumps(summary["runs"][-1]), flush=True)
        (out / "v2-train.json").write_text(json.dumps(summary, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("bench", "train"))
    parser.add_argument("--model", type=Path, default=Path("models/brain-xception"))
    parser.add_argument("--pack", type=Path, nargs="*", default=[])
    parser.add_argument("--seeds", type=int, nargs="*", default=[1337, 2024])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "var/gpu-out")))
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode == "bench":
        bench(args.model, args.out, args.smoke)
    else:
        train_seeds(args.pack, args.model, args.seeds, args.epochs, args.out, args.smoke)


if __name__ == "__main__":
    main()
