"""Several worker processes sharing one GPU: aggregate slices/s for 1, 2 and 4 processes.

    KERAS_BACKEND=jax python bench/gpu_share.py --procs 1 2 4 --seconds 10 --out OUT

Each process loads the shipped weights, compiles the serving step of `scripts/gpu_v2.py`
(forward pass + Grad-CAM gradient, batch 8, 224 px) with memory allocated on demand (no
preallocation, the JAX twin of the workers' TensorFlow memory growth), waits for the others,
then runs for a fixed time. The ratio against one process in the same run is the figure.
Needs a GPU machine with JAX and Keras (the lent device); it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _worker(model_dir: str, batch: int, seconds: float, barrier, results) -> None:
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mri.card import read_card
    from mri.model.store import verified_weights
    from scripts.gpu_v2 import _serving_step, serving_parts

    backbone, head, params = serving_parts(verified_weights(Path(model_dir), read_card(Path(model_dir))), 224)
    serve = jax.jit(_serving_step(backbone, head))
    pixels = jnp.asarray(np.random.default_rng(os.getpid()).uniform(0, 255, (batch, 224, 224, 3)), jnp.float32)
    jax.block_until_ready(serve(params, pixels))  # compile before the clock starts
    barrier.wait()
    started, steps = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        jax.block_until_ready(serve(params, pixels))
        steps += 1
    elapsed = time.perf_counter() - started
    stats = jax.devices()[0].memory_stats() or {}
    results.put({"slices_per_s": steps * batch / elapsed, "peak_gpu_mib": stats.get("peak_bytes_in_use", 0) / 2**20})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", default=str(ROOT / "models" / "brain-xception"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "var/gpu-out")))
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for count in args.procs:
        barrier, results = ctx.Barrier(count), ctx.Queue()
        procs = [
            ctx.Process(target=_worker, args=(args.model, args.batch, args.seconds, barrier, results))
            for _ in range(count)
        ]
        for proc in procs:
            proc.start()
        per_process = [results.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join()
        total = sum(r["slices_per_s"] for r in per_process)
        rows.append({
            "processes": count,
            "slices_per_s": round(total, 1),
            "per_process_slices_per_s": [round(r["slices_per_s"], 1) for r in per_process],
            "peak_gpu_mib_per_process": [round(r["peak_gpu_mib"]) for r in per_process],
        })
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["slices_per_s"]
    for row in rows:
        row["ratio_vs_first"] = round(row["slices_per_s"] / base, 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_share.json").write_text(json.dumps({"batch": args.batch, "rows": rows}, indent=2))
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
