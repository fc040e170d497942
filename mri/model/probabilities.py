"""Calibrated class probabilities from the model's logits (temperature scaling, the card's
`temperature`): the same function in serving, evaluation and calibration."""
from __future__ import annotations

import numpy as np


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of logits / T (temperature scaling), row-wise, numerically stable."""
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)
