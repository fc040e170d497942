"""Validation accuracy, and how many scans the out-of-distribution gate turns away, when the
same scans are exported differently.

Each perturbation rewrites the original file (brightness, contrast, gamma, sharpening, blur,
JPEG quality, resolution, bit depth) before the serving path sees it. A model that keys on
"small, soft image → no tumor" drops sharply on `upscale_512_sharp`; a gate that reads texture
(mri/model/ood.py) must not take a blurred, recompressed or low-resolution export of a real
slice for something that is not an MRI.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mri.model.ood import load_gate
from mri.model.probabilities import calibrated_probabilities
from mri.model.store import load_classifier
from mri.vocabulary import CLASS_NAMES
from training.metrics import summarize
from training.ood_features import extract, feature_model


def _gray(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32) / 255.0


def _png(gray: np.ndarray, bits: int = 8) -> bytes:
    buffer = io.BytesIO()
    if bits == 16:
        Image.fromarray((np.clip(gray, 0, 1) * 65535 + 0.5).astype(np.uint16)).save(buffer, format="PNG")
    else:
        Image.fromarray((np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(gray: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def re_exported(data: bytes, black: float, gain: float, gamma: float) -> bytes:
    """The same slice exported with another display mapping: black + gain · gray^gamma, clipped
    to [0, 1], as an 8-bit PNG. Preprocessing rescales brightness but keeps the black level, so with black > 0
    the model and the gate see air shown grey inside the head's box (a display window whose
    floor sits below air)."""
    return _png(black + gain * _gray(data) ** gamma)


def _resize_long_side(gray: np.ndarray, side: int) -> np.ndarray:
    h, w = gray.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)


def _sharpen(gray: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    return np.clip(gray + amount * (gray - cv2.GaussianBlur(gray, (0, 0), sigma)), 0, 1)


PERTURBATIONS: dict[str, Callable[[bytes], bytes]] = {
    "clean": lambda b: b,
    "brighter_x1.3": lambda b: _png(_gray(b) * 1.3),
    "darker_x0.7": lambda b: _png(_gray(b) * 0.7),
    "low_contrast": lambda b: _png(0.15 + 0.6 * _gray(b)),
    "gamma_0.7": lambda b: _png(_gray(b) ** 0.7),
    "gamma_1.4": lambda b: _png(_gray(b) ** 1.4),
    "sharpened": lambda b: _png(_sharpen(_gray(b), 1.0, 1.5)),
    "blurred": lambda b: _png(cv2.GaussianBlur(_gray(b), (0, 0), 1.2)),
    "jpeg_q40": lambda b: _jpeg(_gray(b), 40),
    "upscale_512_sharp": lambda b: _png(_sharpen(_resize_long_side(_gray(b), 512), 0.8, 1.0)),
    "upscale_1024": lambda b: _png(_resize_long_side(_gray(b), 1024)),
    "downscale_half": lambda b: _png(_resize_long_side(_gray(b), max(128, max(_gray(b).shape) // 2))),
    "downscale_128": lambda b: _png(_resize_long_side(_gray(b), 128)),  # a DWI/perfusion-sized matrix
    "png_16bit": lambda b: _png(_gray(b), bits=16),
    "rgb_jpeg": lambda b: _rgb_jpeg(b),
}


def _rgb_jpeg(data: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def robustness_report(model_dir: Path, samples: list, out_dir: Path) -> dict:
    """Accuracy, per-class recall and the gate's rejections under each perturbation (accuracy
    over all scans, as if the gate were not there); writes robustness.json/.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, card = load_classifier(model_dir)
    gate = load_gate(Path(model_dir), card)
    features = feature_model(model)
    true = np.array([s.label for s in samples])
    report = {}
    for name, transform in PERTURBATIONS.items():
        print(f"perturbation {name}", flush=True)
        found = extract(
            features,
            [lambda p=s.path, t=transform: t(Path(p).read_bytes()) for s in samples],
            card.input_size,
            desc=name,
            head_crop=card.head_crop,
        )
        metrics = summarize(calibrated_probabilities(found["logits"], card.temperature), true, CLASS_NAMES)
        report[name] = {
            "accuracy": metrics["accuracy"],
            "ece_15": metrics["ece_15"],
            "recall": {k: v["recall"] for k, v in metrics["per_class"].items()},
        }
        if gate is not None:  # NaN (a file the decoder refused) counts as rejected, as served
            rejected = ~(gate.scorer.scores(found[gate.input_name]) <= gate.threshold)
            report[name]["gate_rejected"] = round(float(rejected.mean()), 5)
            report[name]["gate_rejected_count"] = int(rejected.sum())
    (out_dir / "robustness.json").write_text(json.dumps({"n": len(samples), "results": report}, indent=2) + "\n")
    _plot(report, out_dir / "robustness.png", len(samples))
    return report


def _plot(report: dict, path: Path, n: int) -> None:
    from training.plots import pyplot

    plt = pyplot()

    names = list(report)
    figure, axis = plt.subplots(figsize=(9, 4))
    accuracy = [report[k]["accuracy"] * 100 for k in names]
    axis.bar(names, accuracy, color=["#3b7dd8" if k == "clean" else "#7aa6e0" for k in names])
    for i, value in enumerate(accuracy):
        axis.text(i, value + 0.1, f"{value:.1f}", ha="center", fontsize=8)
    axis.set_ylim(max(0, min(accuracy) - 5), 100.5)
    axis.set_ylabel("validation accuracy (%)")
    axis.set_title(f"Accuracy on the validation split under export perturbations (n={n})")
    plt.setp(axis.get_xticklabels(), rotation=35, ha="right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
