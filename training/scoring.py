"""Score scan files with a model through the serving preprocessing (batched, with progress)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mri.model.preprocessing import model_batch, preprocess_scan


def scan_logits(
    model: Any,
    paths: Sequence[Path],
    input_size: int,
    batch_size: int = 16,
    progress: bool = True,
    transform: Any = None,
    head_crop: str = "v1",
) -> np.ndarray:
    """Logits (N, 4) of each file. `transform(bytes) -> bytes` perturbs a file before decoding."""
    from tqdm import tqdm

    rows = []
    bar = tqdm(total=len(paths), desc="scoring", unit="scan", disable=not progress)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        blobs = [Path(p).read_bytes() for p in chunk]
        if transform is not None:
            blobs = [transform(b) for b in blobs]
        batch = model_batch([preprocess_scan(b, input_size, head_crop) for b in blobs])
        rows.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32))
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.float32)
