"""The model runtime of a worker process: load the classifier once, analyze scans.

`get_analyzer().analyze(data)` decodes a scan with the serving preprocessing, runs Xception
once and, in that same pass, takes the gradient of the predicted class's logit with respect to
`block14_sepconv2_act` for Grad-CAM (the app we replace rebuilt a gradient model and ran the
network twice per request). Probabilities are temperature-calibrated. TensorFlow is imported
here only, lazily: the web process never loads it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workers.gradcam import encode_png, gradcam_map, render_overlay
from workers.imaging import CLASS_NAMES, decode_gray_bounded, map_to_scan, prepare, to_model_input
from workers.inference import LOW_CONFIDENCE, calibrated_probabilities
from workers.model_store import DEFAULT_MODEL_DIR

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisResult:
    label: str
    probabilities: dict[str, float]
    # float32 in [0, 1], the scan's height × width; for a scan longer than WORK_SIDE (2048 px),
    # the size of the copy that was analysed (same aspect ratio).
    heatmap: np.ndarray
    overlay_png: bytes
    model_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    @property
    def low_confidence(self) -> bool:
        return self.confidence < LOW_CONFIDENCE


class Analyzer:
    """One loaded model; `analyze` / `analyze_batch` are safe to call repeatedly (not
    concurrently) in a process."""

    def __init__(self, model_dir: Path | str = DEFAULT_MODEL_DIR) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        started = time.perf_counter()
        import keras
        import tensorflow as tf

        from workers.model_def import CAM_LAYER
        from workers.model_store import load_classifier

        enable_gpu_memory_growth(tf)
        model, card = load_classifier(Path(model_dir))
        self.model_version: str = card["version"]
        self.input_size: int = int(card["input_size"])
        self.temperature: float = float(card.get("temperature", 1.0))
        cam_model = keras.Model(model.inputs, [model.get_layer(CAM_LAYER).output, model.output])

        # Any batch size: one traced function serves analyze() (batch 1) and analyze_batch().
        @tf.function(input_signature=[tf.TensorSpec((None, self.input_size, self.input_size, 3), tf.float32)])
        def forward(pixels: Any) -> tuple[Any, Any, Any]:
            with tf.GradientTape() as tape:
                features, logits = cam_model(pixels, training=False)
                # Each slice's predicted-class logit, summed: slices do not interact (BatchNorm in
                # inference mode), so d(sum)/d(features of slice i) is slice i's own gradient.
                score = tf.reduce_sum(tf.reduce_max(logits, axis=-1))
            # Only the head lies between the features and the logit: this backward pass is tiny.
            return features, logits, tape.gradient(score, features)

        self._forward = forward
        self._forward(tf.zeros((1, self.input_size, self.input_size, 3)))  # trace once, at load
        self.device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
        # Whether a study's slices should go through analyze_batch: on this project's CPU a
        # batch of 8 or 32 costs ~1.5x more per slice than batch 1 (bench/analyze_batch.py,
        # docs/operations.md), so CPU workers analyse slices one at a time.
        self.batch_preferred: bool = self.device == "GPU"
        logger.info("model %s loaded on %s in %.1f s", self.model_version, self.device, time.perf_counter() - started)

    def analyze(self, data: bytes) -> AnalysisResult:
        """Classify one scan and explain it. Raises ScanDecodeError for a file we cannot read."""
        return self.analyze_batch([data])[0]

    def analyze_batch(self, scans: Sequence[bytes]) -> list[AnalysisResult]:
        """Several slices (one study) in one forward/backward pass; results in input order, the
        same as `analyze` one by one (within float tolerance). Raises ScanDecodeError if any
        file cannot be read (callers with untrusted files analyse them one by one then).
        `timings_ms["inference"]` is each slice's share of the batch's model time."""
        if not scans:
            return []
        clocks = [_Clock() for _ in scans]
        grays, prepared = [], []
        for data, clock in zip(scans, clocks, strict=True):
            gray = decode_gray_bounded(data)  # at most WORK_SIDE a side: bounded memory
            clock.lap("decode")
            prepared.append(prepare(gray, self.input_size))
            grays.append(gray)
            clock.lap("preprocess")
        started = time.perf_counter()
        features, logits, gradients = self._forward(to_model_input(np.stack([p.pixels for p in prepared])))
        features, logits, gradients = features.numpy(), logits.numpy(), gradients.numpy()
        model_ms = (time.perf_counter() - started) * 1000 / len(scans)
        probabilities = calibrated_probabilities(logits, self.temperature)
        results = []
        for i, clock in enumerate(clocks):
            clock.add("inference", model_ms)
            cam = gradcam_map(features[i], gradients[i])
            heatmap = np.clip(map_to_scan(cam, prepared[i]), 0.0, 1.0)
            overlay = encode_png(render_overlay(grays[i], heatmap))
            clock.lap("gradcam_and_overlay")
            results.append(
                AnalysisResult(
                    label=CLASS_NAMES[int(np.argmax(probabilities[i]))],
                    probabilities={name: float(p) for name, p in zip(CLASS_NAMES, probabilities[i], strict=True)},
                    heatmap=heatmap,
                    overlay_png=overlay,
                    model_version=self.model_version,
                    timings_ms=clock.laps(),
                )
            )
        return results


def enable_gpu_memory_growth(tf: Any) -> None:
    """Take GPU memory as needed instead of all of it at start, so several worker processes can
    share one GPU (each holds one model). Must run before TensorFlow touches the GPU."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process: too late, and harmless
            logger.warning("GPU %s already initialised; memory growth not set", gpu.name)


class _Clock:
    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self._laps[name] = round((now - self._last) * 1000, 2)
        self._last = now

    def add(self, name: str, ms: float) -> None:
        """A share of work done for several slices at once (the batch's model time)."""
        self._laps[name] = round(ms, 2)
        self._last = time.perf_counter()

    def laps(self) -> dict[str, float]:
        return {**self._laps, "total": round(sum(self._laps.values()), 2)}


_analyzer: Analyzer | None = None
_lock = threading.Lock()


def get_analyzer() -> Analyzer:
    """The process's analyzer, loaded on first use (model directory: env MODEL_DIR)."""
    global _analyzer
    if _analyzer is None:
        with _lock:
            if _analyzer is None:
                _analyzer = Analyzer(os.environ.get("MODEL_DIR") or DEFAULT_MODEL_DIR)
    return _analyzer
