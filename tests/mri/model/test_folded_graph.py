"""The serving graph (BatchNorm folded, bfloat16 where the CPU multiplies it natively) against
the Keras model it was folded from, on real scans: same labels, near-same probabilities, OOD
scores and heatmaps (the maps a radiologist sees must not move)."""
from __future__ import annotations

import numpy as np
import pytest

from training.data import DEFAULT_DATA, list_samples

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def scans() -> list[bytes]:
    samples = list_samples(DEFAULT_DATA)
    picked = [samples[i] for i in np.linspace(0, len(samples) - 1, 8).astype(int)]  # all four classes
    return [s.path.read_bytes() for s in picked]


@pytest.fixture(scope="module")
def reference(scans):
    from mri.model.analyzer import Analyzer

    return _analyze_all(Analyzer(graph="keras"), scans)


def _analyze_all(analyzer, scans: list[bytes]) -> list:
    return [analyzer.analyze(s) for s in scans]


def _peak_is_on_the_reference_peak(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Our hottest pixel is one the reference map also rates ≥ 90 % of its own peak (two
    near-equal maxima may swap under rounding; the hot spot may not move)."""
    return bool(theirs.flat[int(np.argmax(ours))] >= 0.9 * theirs.max())


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_folded_graph_gives_the_keras_models_results(scans, reference, precision: str) -> None:
    from mri.model.analyzer import Analyzer

    analyzer = Analyzer(graph="folded", precision=precision)
    assert analyzer.precision == precision
    for ours, theirs in zip(_analyze_all(analyzer, scans), reference, strict=True):
        assert ours.label == theirs.label
        for name, p in theirs.probabilities.items():
            assert ours.probabilities[name] == pytest.approx(p, abs=1e-4 if precision == "float32" else 0.02)
        assert ours.ood_score == pytest.approx(theirs.ood_score, abs=1e-3 if precision == "float32" else 0.05)
        assert ours.heatmap.shape == theirs.heatmap.shape
        correlation = np.corrcoef(ours.heatmap.ravel(), theirs.heatmap.ravel())[0, 1]
        assert correlation > (0.9999 if precision == "float32" else 0.99)
        assert _peak_is_on_the_reference_peak(ours.heatmap, theirs.heatmap)


def test_serving_default_is_the_folded_graph() -> None:
    from mri.model.folded_graph import cpu_has_bfloat16_dot, default_compute_dtype
    from workers.runtime import get_analyzer

    analyzer = get_analyzer()
    assert analyzer.graph == "folded"
    assert analyzer.precision == default_compute_dtype(analyzer.device)
    if analyzer.device == "CPU":
        assert analyzer.precision == ("bfloat16" if cpu_has_bfloat16_dot() else "float32")


def test_precision_setting_is_validated(monkeypatch) -> None:
    from mri.model.folded_graph import PRECISION_ENV, default_compute_dtype

    monkeypatch.setenv(PRECISION_ENV, "float32")
    assert default_compute_dtype("CPU") == "float32"
    monkeypatch.setenv(PRECISION_ENV, "half")
    with pytest.raises(ValueError, match="ANALYZER_PRECISION"):
        default_compute_dtype("CPU")
    monkeypatch.setenv(PRECISION_ENV, "auto")
    assert default_compute_dtype("GPU") == "float32"
