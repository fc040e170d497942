"""Class activation maps from one image's feature maps and class-score gradients (NumPy only).

Every method takes, per layer, the activations A (h, w, C) and the gradient G = dS/dA of the
class score S (the class logit), and returns a map over the model input in [0, 1]:

- gradcam   (Selvaraju et al.): ReLU(Σc mean(Gc)·Ac)
- gradcampp (Chattopadhyay et al.): channel weights Σxy α·ReLU(G), α = G² / (2G² + ΣA·G³)
- hirescam  (Draelos & Carin): ReLU(Σc Gc⊙Ac), the gradient kept per position
- layercam  (Jiang et al.): ReLU(Σc ReLU(Gc)⊙Ac) per layer; layers fused as the mean of their
  [0, 1] maps at the input's resolution, so shallow (finer) layers sharpen the deep one
  (served: block13 alone, `layercam-13`; the model card's `heatmap_method` says which)

`flip` averages a method with its map of the mirrored image, mirrored back. The runtime
computes A and G in one traced pass (mri/model/analyzer.py); these functions are the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mri.card import DEFAULT_HEATMAP_METHOD

# Short names for the layers a method can read (Xception at 224 px: block4 28², block13 14²,
# block14 7²). Full Keras layer names are accepted too.
LAYER_ALIASES = {
    "block3": "block3_sepconv2_act",
    "block4": "block4_sepconv2_act",
    "block12": "block12_sepconv3_act",
    "block13": "block13_sepconv2_act",
    "block14": "block14_sepconv2_act",
}


@dataclass(frozen=True)
class CamSpec:
    """A CAM recipe: the combination rule, the layers it reads and whether to flip-average."""

    rule: str  # gradcam | gradcampp | hirescam | layercam
    layers: tuple[str, ...] = ("block14",)
    flip: bool = False

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(LAYER_ALIASES.get(name, name) for name in self.layers)

    @property
    def name(self) -> str:
        return "+".join(
            [self.rule, *(["flip"] if self.flip else []), *([] if self.layers == ("block14",) else self.layers)]
        )


# The methods compared by `python -m training explain-eval` (README, "Where the heatmap points").
CAM_METHODS: dict[str, CamSpec] = {
    "gradcam": CamSpec("gradcam"),
    "gradcampp": CamSpec("gradcampp"),
    "hirescam": CamSpec("hirescam"),
    "layercam": CamSpec("layercam", ("block4", "block13", "block14")),
    "gradcam-flip": CamSpec("gradcam", flip=True),
    "layercam-flip": CamSpec("layercam", ("block4", "block13", "block14"), flip=True),
    "hirescam-13-14": CamSpec("hirescam", ("block13", "block14")),
    # LayerCAM on block13 alone (14×14): the backward pass stops inside block13, under block14, and
    # it points better than the three-layer fusion (docs/heatmaps.md, "One layer, block13").
    "layercam-13": CamSpec("layercam", ("block13",)),
}
SHIPPED_METHOD = DEFAULT_HEATMAP_METHOD  # what a card without `heatmap_method` gets


def parse_method(name: str, layers: Sequence[str] | None = None) -> CamSpec:
    """A named method, optionally with its layers replaced (`--layers block4 block14`)."""
    if name not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {name!r}; known: {', '.join(CAM_METHODS)}")
    spec = CAM_METHODS[name]
    return CamSpec(spec.rule, tuple(layers), spec.flip) if layers else spec


def normalize(cam: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the peak; all zeros when nothing speaks for the class."""
    cam = np.maximum(np.nan_to_num(cam.astype(np.float32)), 0.0)
    peak = float(cam.max())
    return cam / peak if peak > 0 else np.zeros_like(cam)


def layer_map(rule: str, features: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """One layer's map (h, w), not yet normalized."""
    a = features.astype(np.float32)
    g = gradients.astype(np.float32)
    if rule == "gradcam":
        return np.maximum((a * g.mean(axis=(0, 1))).sum(axis=-1), 0.0)
    if rule == "gradcampp":
        g2, g3 = g * g, g * g * g
        denominator = 2.0 * g2 + a.sum(axis=(0, 1)) * g3
        alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=np.abs(denominator) > 1e-12)
        weights = (alpha * np.maximum(g, 0.0)).sum(axis=(0, 1))
        return np.maximum((a * weights).sum(axis=-1), 0.0)
    # einsum: the channel sum without an (h, w, C) temporary (this runs for every served scan)
    if rule == "hirescam":
        return np.maximum(np.einsum("hwc,hwc->hw", a, g), 0.0)
    if rule == "layercam":
        return np.maximum(np.einsum("hwc,hwc->hw", a, np.maximum(g, 0.0)), 0.0)
    raise ValueError(f"unknown CAM rule {rule!r}")


def combine(spec: CamSpec, features: Sequence[np.ndarray], gradients: Sequence[np.ndarray], size: int) -> np.ndarray:
    """The method's map at size×size from one image's per-layer (h, w, C) activations/gradients."""
    maps = [
        cv2.resize(normalize(layer_map(spec.rule, a, g)), (size, size), interpolation=cv2.INTER_LINEAR)
        for a, g in zip(features, gradients, strict=True)
    ]
    return normalize(np.mean(maps, axis=0))


def flip_average(cam: np.ndarray, mirrored_cam: np.ndarray) -> np.ndarray:
    """Mean of a map and the map of the mirrored image, mirrored back."""
    return normalize(0.5 * (cam + mirrored_cam[:, ::-1]))
