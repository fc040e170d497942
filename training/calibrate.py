"""Temperature scaling (Guo et al., 2017): one scalar T that divides the logits.

Fitted by minimising the negative log-likelihood of the validation split. It changes no
prediction, only how confident the probabilities are, so they can be taken at face value.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from mri.model.probabilities import calibrated_probabilities
from training.metrics import negative_log_likelihood


def fit_temperature(logits: np.ndarray, true: np.ndarray) -> float:
    """T in [0.05, 20] minimising NLL of softmax(logits / T)."""
    true = np.asarray(true)

    def nll(log_t: float) -> float:
        return negative_log_likelihood(calibrated_probabilities(logits, float(np.exp(log_t))), true)

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))
