"""Our metric code against scikit-learn on fixed inputs."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, precision_recall_fscore_support

from mri.model.probabilities import calibrated_probabilities
from training.calibrate import fit_temperature
from training.metrics import expected_calibration_error, summarize

CLASSES = ("a", "b", "c", "d")


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    true = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4)) + 2.5 * np.eye(4)[true] * (rng.random(400) < 0.8)[:, None]
    return true, calibrated_probabilities(logits, 1.0)


def test_summary_matches_scikit_learn(scored) -> None:
    true, probabilities = scored
    predicted = probabilities.argmax(1)
    ours = summarize(probabilities, true, CLASSES)
    precision, recall, f1, support = precision_recall_fscore_support(true, predicted, labels=range(4), zero_division=0)
    assert ours["accuracy"] == pytest.approx(accuracy_score(true, predicted))
    assert ours["macro_f1"] == pytest.approx(f1_score(true, predicted, average="macro"))
    assert ours["confusion_matrix"] == confusion_matrix(true, predicted, labels=range(4)).tolist()
    for i, name in enumerate(CLASSES):
        assert ours["per_class"][name]["precision"] == pytest.approx(precision[i])
        assert ours["per_class"][name]["recall"] == pytest.approx(recall[i])
        assert ours["per_class"][name]["f1"] == pytest.approx(f1[i])
        assert ours["per_class"][name]["support"] == support[i]
    assert ours["nll"] == pytest.approx(log_loss(true, probabilities, labels=range(4)))
    onehot = np.eye(4)[true]
    assert ours["brier"] == pytest.approx(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def test_ece_by_hand() -> None:
    # Two bins used: confidence 0.95 (2 scans, 1 right) and 0.55 (2 scans, both right).
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    true = np.array([0, 1, 0, 0])
    expected = 0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.55)
    assert expected_calibration_error(probabilities, true, 15) == pytest.approx(expected)


def test_temperature_scaling_recovers_an_overconfident_temperature() -> None:
    rng = np.random.default_rng(7)
    true = rng.integers(0, 4, 3000)
    honest_logits = rng.normal(size=(3000, 4)) + 1.5 * np.eye(4)[true]
    honest = calibrated_probabilities(honest_logits, 1.0)
    sampled = np.array([rng.choice(4, p=p) for p in honest])  # labels drawn from the honest model
    temperature = fit_temperature(honest_logits * 3.0, sampled)  # a model 3× overconfident
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert calibrated_probabilities(honest_logits * 3.0, temperature).argmax(1).tolist() == honest.argmax(1).tolist()
