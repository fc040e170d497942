"""The serving path's pure steps, shared with evaluation so both score scans identically."""
from __future__ import annotations

import numpy as np

from workers.imaging import Prepared, decode_gray_bounded, prepare, to_model_input
from workers.results import LOW_CONFIDENCE  # noqa: F401  (re-exported: its old home)


def preprocess_scan(data: bytes, input_size: int, head_crop: str = "v1") -> Prepared:
    """Uploaded bytes → the model's input (and how to map results back onto the scan). A scan
    longer than WORK_SIDE is analysed on a box-averaged copy (workers/imaging.py)."""
    return prepare(decode_gray_bounded(data), input_size, head_crop)


def model_batch(prepared: list[Prepared]) -> np.ndarray:
    return to_model_input(np.stack([p.pixels for p in prepared]))


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of logits / T (temperature scaling), row-wise, numerically stable."""
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)
