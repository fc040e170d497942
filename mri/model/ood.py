"""The out-of-distribution gate: how unlike the brain MRI slices the model was trained on a
scan is, from features the runtime's one forward pass already computes.

The score is the class-conditional Mahalanobis distance (Lee et al., 2018) of the scan's pooled
maps of one layer (the gate's `GateInput`) to the nearest class mean, with one covariance shared
by the classes, fitted on the training split with Ledoit-Wolf shrinkage: score = min over
classes c of (z - μ_c)ᵀ Σ⁻¹ (z - μ_c), divided by the number of dimensions. Higher means less
like the training scans. A scan whose score is above the threshold the model card holds is out
of distribution: no tumour label is given.

Which layer: gates fitted since 2026-12-07 read the entry flow's output (the end of block 4,
which block 5 reads), pooled as the spatial mean and standard deviation of each channel: how the image's
local texture and contrast look, which real MRI from other scanners and sequences shares and
photos, charts and ultrasound do not (scripts/gate_layers.py compared eight layers; docs/ood.md).
Earlier cards' gates read `block14_sepconv1_act`'s mean, a semantic layer that also rejected
real slices unlike the training ones in content (skull base, skull-stripped); a card whose `ood`
section names no input is read that way.

Statistics live beside the weights (`ood.npz`: class means, the leading eigen-directions of Σ)
and are sha256-checked against the card like the weights; the card's `ood` section holds the
input, the threshold and how it was chosen (`python -m training ood fit`). Scoring is a few
small matrix products per scan, well under a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mri.card import ModelCard, ModelIntegrityError
from mri.model.store import sha256_file

STATISTICS_FILE = "ood.npz"
# How many leading covariance directions the gate keeps (`python -m training ood evaluate`
# compares ranks).
RANK = 256


@dataclass(frozen=True)
class GateInput:
    """The maps the gate scores (`layer`'s output, or with `input_of` the maps entering it), and
    how they are pooled over space."""

    layer: str
    pooling: str  # "mean" | "mean+std": each channel's spatial mean (and standard deviation)
    # Read the maps entering `layer`: Keras names the residual Add layers that make them by a
    # per-process counter (`add_2` in one process is `add_14` after another model was built).
    input_of: bool = False

    def describe(self) -> str:
        return f"the maps entering {self.layer}" if self.input_of else self.layer

    def width(self, model: Any) -> int:
        """How many features this input gives for `model`."""
        channels = int(model.get_layer(self.layer_name(model)).output.shape[-1])
        return 2 * channels if self.pooling == "mean+std" else channels

    def layer_name(self, model: Any) -> str:
        """The name, in this process's `model`, of the layer whose output holds the maps."""
        if not self.input_of:
            return self.layer
        inputs = model.get_layer(self.layer).input
        (source,) = inputs if isinstance(inputs, list) else [inputs]
        return source._keras_history[0].name

    def pool(self, maps: np.ndarray) -> np.ndarray:
        """(N, H, W, C) maps → (N, C) or (N, 2C) features (the runtime does the same in-graph)."""
        maps = np.asarray(maps, dtype=np.float32)
        pooled = [maps.mean(axis=(1, 2))]
        if self.pooling == "mean+std":
            pooled.append(maps.std(axis=(1, 2)))
        return np.concatenate(pooled, axis=1)


GATE_INPUTS = {
    "sep1": GateInput("block14_sepconv1_act", "mean"),  # gates fitted until 2026-12-07 (1,536)
    # The entry flow's output: block 4's residual sum, which block 5 reads (2 × 728).
    "entry": GateInput("block5_sepconv1_act", "mean+std", input_of=True),
}
LEGACY_INPUT = "sep1"  # a card's `ood` section that names no input was fitted on this
FIT_INPUT = "entry"  # what `python -m training ood fit` fits now


@dataclass(frozen=True)
class MahalanobisScorer:
    """Squared Mahalanobis distance to the nearest class mean, per dimension.

    Σ⁻¹ is kept as its `rank` leading eigen-directions, scaled (`whitening`, D × rank), plus one
    variance for all the others (`residual_variance`): after Ledoit-Wolf shrinkage the small
    eigenvalues are nearly equal, so this is close to the full inverse at a fraction of its
    size (2048² floats would be 16 MB beside ~47 MB of weights).
    """

    means: np.ndarray  # (classes, D)
    basis: np.ndarray  # (D, rank): leading eigenvectors of Σ
    variances: np.ndarray  # (rank,): their eigenvalues
    residual_variance: float  # mean of Σ's other eigenvalues (0: none, rank = D)

    @property
    def whitening(self) -> np.ndarray:
        """(D, rank): the leading part of W with W Wᵀ = Σ⁻¹."""
        return self.basis / np.sqrt(self.variances)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(N, D) pooled features → (N,) scores."""
        features = np.atleast_2d(np.asarray(features, dtype=np.float32))
        whitening = self.whitening
        best = np.full(len(features), np.inf)
        for mean in self.means:
            offset = features - mean
            leading = ((offset @ whitening) ** 2).sum(axis=1)
            if self.residual_variance > 0:
                inside = ((offset @ self.basis) ** 2).sum(axis=1)
                leading += np.maximum((offset**2).sum(axis=1) - inside, 0.0) / self.residual_variance
            best = np.minimum(best, leading)
        return (best / features.shape[1]).astype(np.float64)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, rank: int | None = None) -> MahalanobisScorer:
        """Class means and the shared covariance of the class-centred features (Ledoit-Wolf)."""
        from sklearn.covariance import LedoitWolf

        features = np.asarray(features, dtype=np.float64)
        classes = np.unique(labels)
        means = np.stack([features[labels == c].mean(axis=0) for c in classes])
        centred = features - means[np.searchsorted(classes, labels)]
        covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
        eigenvalues = np.maximum(eigenvalues, 1e-12)
        rank = len(eigenvalues) if rank is None else min(rank, len(eigenvalues))
        keep = slice(len(eigenvalues) - rank, None)
        rest = eigenvalues[: len(eigenvalues) - rank]
        return cls(
            means=means.astype(np.float32),
            basis=eigenvectors[:, keep].astype(np.float32),
            variances=eigenvalues[keep].astype(np.float32),
            residual_variance=float(rest.mean()) if rest.size else 0.0,
        )

    def save(self, path: Path) -> None:
        np.savez(
            path,
            means=self.means,
            basis=self.basis,
            variances=self.variances,
            residual_variance=np.float64(self.residual_variance),
        )

    @classmethod
    def load(cls, path: Path) -> MahalanobisScorer:
        with np.load(path) as stored:
            return cls(
                means=stored["means"].astype(np.float32),
                basis=stored["basis"].astype(np.float32),
                variances=stored["variances"].astype(np.float32),
                residual_variance=float(stored["residual_variance"]),
            )


@dataclass(frozen=True)
class OodGate:
    scorer: MahalanobisScorer
    threshold: float
    input_name: str = LEGACY_INPUT  # a GATE_INPUTS key
    statistics_sha256: str = ""  # which fit: names the gate beside each score it judged

    @property
    def input(self) -> GateInput:
        return GATE_INPUTS[self.input_name]

    def check_width(self, width: int) -> None:
        """Statistics fitted on other features than the input the card names (a card and an
        ood.npz from different fits, or code older than the card) would score every scan wrongly:
        refuse them at load instead."""
        fitted = int(self.scorer.means.shape[1])
        if fitted != width:
            raise ModelIntegrityError(
                f"the OOD statistics hold {fitted} features, but the card's gate input {self.input_name!r} "
                f"gives {width}: rerun `python -m training ood fit` or restore the card and ood.npz together."
            )

    def score(self, pooled: np.ndarray) -> float:
        """One scan's pooled features (self.input) → its score."""
        return float(self.scorer.scores(pooled[None])[0])

    def is_out_of_distribution(self, score: float) -> bool:
        return not score <= self.threshold  # NaN (a broken forward pass) is out too


def load_gate(model_dir: Path, card: dict) -> OodGate | None:
    """The gate the card describes, statistics checked against their sha256; None when the
    card has no `ood` section (a model the fit command has not been run for yet)."""
    section = ModelCard.of(card).ood
    if not section:
        return None
    path = Path(model_dir) / section.get("statistics_file", STATISTICS_FILE)
    if not path.exists():
        raise ModelIntegrityError(f"OOD statistics {path} are missing; run `python -m training ood fit`.")
    actual = sha256_file(path)
    if actual != section.get("statistics_sha256"):
        raise ModelIntegrityError(
            f"OOD statistics {path} have sha256 {actual}, but the model card expects "
            f"{section.get('statistics_sha256')}: rerun `python -m training ood fit` or restore the file."
        )
    input_name = section.get("input", LEGACY_INPUT)
    if input_name not in GATE_INPUTS:
        raise ModelIntegrityError(
            f"the model card's OOD gate reads {input_name!r}, which this code does not know ({', '.join(GATE_INPUTS)})."
        )
    return OodGate(MahalanobisScorer.load(path), float(section["threshold"]), input_name, actual)
