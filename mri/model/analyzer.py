"""The analyzer: one loaded classifier that analyzes scans (the per-process instance a worker
uses is workers.runtime.get_analyzer()).

`Analyzer(model_dir).analyze(data)` decodes a scan with the serving preprocessing, runs Xception
once and, in that same pass, takes the gradient of the predicted class's logit with respect to
the layers the heatmap method reads (mri.model.cams; the app we replace rebuilt a gradient model
and ran the network twice per request). `analyze_batch` does several slices in one pass;
`explain(data, label)` gives any class's heatmap. Probabilities are temperature-calibrated.
The out-of-distribution score (mri/model/ood.py) comes from the same pass: an earlier layer's
maps pooled over space (the gate's input), for every slice of a batch. TensorFlow is imported here only,
lazily: the web process never loads it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mri.card import DEFAULT_MODEL_DIR
from mri.intake.decode import Decoded, decode_gray_bounded, decode_timed
from mri.model.cams import CamSpec, combine, flip_average, parse_method
from mri.model.folded_graph import default_compute_dtype, folded_call
from mri.model.ood import FIT_INPUT, GATE_INPUTS, OodGate, load_gate
from mri.model.overlays import overlay_png
from mri.model.preprocessing import Prepared, map_to_scan, prepare, to_model_input
from mri.model.probabilities import calibrated_probabilities
from mri.results import AnalysisResult
from mri.vocabulary import CLASS_NAMES, LOW_CONFIDENCE, NO_TUMOUR

logger = logging.getLogger(__name__)

# `targets` for the traced pass: a class index, OWN (the row's own predicted class), or
# pair_of(k) (the class predicted for row k: a mirrored copy explains its original's class).
OWN = -1


def pair_of(row: int) -> int:
    return -2 - row


class Analyzer:
    """One loaded model; `analyze` / `analyze_batch` / `explain` are safe to call repeatedly, and
    from several threads at once (a CPU worker's study lanes: the traced function and the maps
    keep no state between calls).

    `cam` names the heatmap method (mri.model.cams.CAM_METHODS; default: the model card's
    `heatmap_method`, else Grad-CAM on block14). `probe_layers` adds layers to the traced pass,
    for `cam_maps` to compare several methods on one forward/backward (explain-eval).
    `graph` "folded" (serving) runs mri/model/folded_graph.py's BatchNorm-folded graph in
    `precision` (default: bfloat16 on a CPU with bfloat16 dot products, else float32); "keras"
    runs the Keras model itself in float32, the reference the folded graph is tested against.
    """

    def __init__(
        self,
        model_dir: Path | str = DEFAULT_MODEL_DIR,
        cam: str | CamSpec | None = None,
        probe_layers: tuple[str, ...] = (),
        graph: str = "folded",
        precision: str | None = None,
    ) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        started = time.perf_counter()
        import keras
        import tensorflow as tf

        from mri.model.store import load_classifier

        enable_gpu_memory_growth(tf)
        model, card = load_classifier(Path(model_dir))
        self.model_version: str = card.version
        self.input_size: int = card.input_size
        self.temperature: float = card.temperature
        self.head_crop: str = card.head_crop
        self.cam: CamSpec = cam if isinstance(cam, CamSpec) else parse_method(cam or card.heatmap_method)
        self.layer_names: tuple[str, ...] = tuple(dict.fromkeys(self.cam.layer_names + tuple(probe_layers)))
        self.ood_gate: OodGate | None = load_gate(Path(model_dir), card)
        self._model = model
        self.device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
        gate_input = self.ood_gate.input if self.ood_gate else GATE_INPUTS[FIT_INPUT]
        if self.ood_gate:
            self.ood_gate.check_width(gate_input.width(model))
        with_std = gate_input.pooling == "mean+std"
        outputs = [*self.layer_names, model.layers[-1].name, gate_input.layer_name(model)]
        if graph == "folded":  # BatchNorm folded into the convolutions (mri/model/folded_graph.py)
            self.precision: str = precision or default_compute_dtype(self.device)
            network = folded_call(model, outputs, self.precision)
        elif graph == "keras":  # the Keras model itself: the reference the folded graph is checked against
            self.precision = "float32"
            cam_model = keras.Model(model.inputs, [model.get_layer(n).output for n in outputs])

            def network(pixels: Any) -> list[Any]:
                return cam_model(pixels, training=False)
        else:
            raise ValueError(f"graph must be 'folded' or 'keras', not {graph!r}")
        self.graph = graph
        size = self.input_size

        # Any batch size: one traced function serves analyze() (batch 1), analyze_batch() and
        # explain(); `targets` (one per row) picks the class whose logit is explained.
        no_tumour, temperature = CLASS_NAMES.index(NO_TUMOUR), float(card.temperature)
        not_tumour = tf.constant([-np.inf if i == no_tumour else 0.0 for i in range(len(CLASS_NAMES))])

        @tf.function(
            input_signature=[
                tf.TensorSpec((None, size, size, 3), tf.float32),
                tf.TensorSpec((None,), tf.int32),
                tf.TensorSpec((None,), tf.bool),
            ]
        )
        def forward(pixels: Any, targets: Any, unvalidated: Any) -> tuple[Any, ...]:
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(pixels)  # the folded graph holds constants, no variables, to record from
                *features, logits, ood_maps = network(pixels)
                own = tf.argmax(logits, axis=-1, output_type=tf.int32)
                source = tf.where(targets <= -2, -2 - targets, tf.range(tf.shape(targets)[0]))
                chosen = tf.where(targets >= 0, targets, tf.gather(own, source))
                # Rows do not interact (BatchNorm in inference mode), so d(sum)/d(features of
                # row i) is row i's own gradient.
                score = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
                # An unreassuring "No tumour" (low calibrated confidence, or a sequence the
                # model is not validated for: Prediction.heatmap_label) also gets the likeliest
                # tumour class's map, from this pass (a mirrored row: its original's).
                as_float32 = tf.cast(logits, tf.float32)
                unsure = tf.reduce_max(tf.nn.softmax(as_float32 / temperature), axis=-1) < LOW_CONFIDENCE
                wanted = (own == no_tumour) & (unvalidated | unsure)
                tumour = tf.gather(tf.argmax(as_float32 + not_tumour, axis=-1, output_type=tf.int32), source)
                wanted = tf.gather(wanted, source) & (targets < 0)
                tumour_logit = tf.gather(as_float32, tumour, axis=1, batch_dims=1)
                tumour_score = tf.reduce_sum(tf.where(wanted, tumour_logit, tf.zeros_like(tumour_logit)))
            # Only the paths from the logit down to the deepest CAM layer are differentiated (the
            # traced function keeps only what its outputs need). The OOD features are an earlier
            # layer of the same pass, pooled over space (per row) as GateInput.pool does.
            gradients = [tf.cast(g, tf.float32) for g in tape.gradient(score, features)]
            # The second backward pass (to the CAM layers only) runs only when a row wants it.
            tumour_gradients = tf.cond(
                tf.reduce_any(wanted),
                lambda: [tf.cast(g, tf.float32) for g in tape.gradient(tumour_score, features)],
                lambda: [tf.zeros_like(g) for g in gradients],
            )
            ood_maps = tf.cast(ood_maps, tf.float32)
            pooled = tf.reduce_mean(ood_maps, axis=[1, 2])
            if with_std:
                pooled = tf.concat([pooled, tf.math.reduce_std(ood_maps, axis=[1, 2])], axis=1)
            features = [tf.cast(t, tf.float32) for t in features]
            return features, gradients, logits, pooled, tumour_gradients, wanted, tumour

        self._forward = forward
        self._forward(tf.zeros((1, size, size, 3)), tf.constant([OWN]), tf.constant([False]))  # trace once, at load
        # Whether a study's slices should go through analyze_batch: on 2-core CPU hosts a batch
        # was ~1.5x slower per slice on one and ~1.3x faster on another, while one analyze()
        # keeps about one core busy (bench/analyze_batch.py, docs/operations.md); so CPU
        # workers analyse slices one per call, on the study task's parallel lanes.
        self.batch_preferred: bool = self.device == "GPU"
        logger.info(
            "model %s loaded on %s (%s graph, %s) in %.1f s",
            self.model_version, self.device, graph, self.precision, time.perf_counter() - started,
        )

    def _run(
        self, prepared: Sequence[Prepared], targets: Sequence[int], flip: bool, unvalidated: Sequence[bool] = ()
    ) -> _Pass:
        """Logits of the scans, per layer the activations and class-score gradients, and the
        scans' pooled OOD-gate features; with `flip`, the mirrored scans follow as rows
        n..2n-1 of the layers, each explaining its original's class. `unvalidated` (per scan,
        default False): on a sequence the model is not validated for, so a "No tumour" there
        wants the likeliest tumour class's gradients too (`_Pass.tumour`)."""
        pixels = to_model_input(np.stack([p.pixels for p in prepared]))
        rows = list(targets)
        flags = [bool(flag) for flag in unvalidated] if len(unvalidated) else [False] * len(prepared)
        if flip:
            pixels = np.concatenate([pixels, pixels[:, :, ::-1]])
            rows += [t if t >= 0 else pair_of(i) for i, t in enumerate(targets)]
            flags += flags
        features, gradients, logits, pooled, tumour_gradients, wanted, tumour = self._forward(
            pixels, np.asarray(rows, dtype=np.int32), np.asarray(flags, dtype=bool)
        )
        count = len(prepared)
        wanted_rows = wanted.numpy()[:count]
        return _Pass(
            logits.numpy()[:count],
            [f.numpy() for f in features],
            [g.numpy() for g in gradients],
            pooled.numpy()[:count],
            [g.numpy() for g in tumour_gradients] if wanted_rows.any() else [],
            [int(t) if w else None for t, w in zip(tumour.numpy()[:count], wanted_rows, strict=True)],
        )

    def probe(self, prepared: Prepared, class_index: int, flip: bool) -> tuple[np.ndarray, list, list]:
        """One scan's logits, and per layer its activations and class-score gradients (class_index
        < 0: the predicted class; with `flip`, the mirrored image as a second row)."""
        run = self._run([prepared], [class_index if class_index >= 0 else OWN], flip)
        return run.logits[0], run.features, run.gradients

    def _cam_from(self, spec: CamSpec, features: list, gradients: list, row: int = 0, count: int = 1) -> np.ndarray:
        """The method's map over the model input for scan `row` of a `_run`/`probe` of `count`
        scans that read its layers (and its mirrored rows, for a flip method)."""
        picked = [self.layer_names.index(name) for name in spec.layer_names]
        maps = [
            combine(spec, [features[i][r] for i in picked], [gradients[i][r] for i in picked], self.input_size)
            for r in ((row, row + count) if spec.flip else (row,))
        ]
        return flip_average(maps[0], maps[1]) if spec.flip else maps[0]

    def analyze(self, data: bytes, decoded: Decoded | None = None, unvalidated: bool = False) -> AnalysisResult:
        """Classify one scan and explain it. Raises ScanDecodeError for a file we cannot read.
        `decoded`: the scan already decoded (`decode_timed`; the worker's burnt-in text check
        decodes it first), so it is not decoded twice. `unvalidated`: as in `analyze_batch`."""
        return self.analyze_batch([data], None if decoded is None else [decoded], [unvalidated])[0]

    def analyze_batch(
        self,
        scans: Sequence[bytes],
        decoded: Sequence[Decoded] | None = None,
        unvalidated: Sequence[bool] | None = None,
    ) -> list[AnalysisResult]:
        """Several slices (one study) in one forward/backward pass; results in input order, the
        same as `analyze` one by one (within float tolerance). Raises ScanDecodeError if any
        file cannot be read (callers with untrusted files analyse them one by one then).
        `decoded`: the scans already decoded (`decode_timed`, in the same order), so a caller
        that needed the pixels first (a study lane's text check) does not pay for them twice.
        `unvalidated` (per scan): on a sequence the model is not validated for. A "No tumour"
        that is no reassurance (there, or at low confidence) also gets the likeliest tumour
        class's heatmap (`tumour_label`, `tumour_heatmap`) from the same pass: the map its card
        opens on, for a second backward pass instead of a second `explain()`.
        `timings_ms["inference"]` is each slice's share of the batch's model time."""
        if decoded is None:
            decoded = [decode_timed(data) for data in scans]  # at most WORK_SIDE a side: bounded memory
        flags = [False] * len(scans) if unvalidated is None else [bool(flag) for flag in unvalidated]
        if len(decoded) != len(scans) or len(flags) != len(scans):
            raise ValueError(f"{len(decoded)} decoded slices, {len(flags)} sequence flags for {len(scans)} scans")
        if not scans:
            return []
        grays = [gray for gray, _ms in decoded]
        clocks, prepared = [_Clock() for _ in grays], []
        for (gray, ms), clock in zip(decoded, clocks, strict=True):
            clock.add("decode", ms)
            prepared.append(prepare(gray, self.input_size, self.head_crop))
            clock.lap("preprocess")
        started = time.perf_counter()
        run = self._run(prepared, [OWN] * len(prepared), self.cam.flip, flags)
        logits, features, gradients, pooled = run.logits, run.features, run.gradients, run.pooled
        model_ms = (time.perf_counter() - started) * 1000 / len(grays)
        probabilities = calibrated_probabilities(logits, self.temperature)
        # One score per slice (a few small matrix products); NaN when the card has no gate.
        scored = time.perf_counter()
        ood_scores = self.ood_gate.scorer.scores(pooled) if self.ood_gate else np.full(len(grays), np.nan)
        ood_ms = (time.perf_counter() - scored) * 1000 / len(grays)
        results = []
        for i, clock in enumerate(clocks):
            clock.add("inference", model_ms)
            clock.add("ood", ood_ms)
            ood_score = float(ood_scores[i])
            cam = self._cam_from(self.cam, features, gradients, row=i, count=len(prepared))
            heatmap = np.clip(map_to_scan(cam, prepared[i]), 0.0, 1.0)
            overlay = overlay_png(grays[i], heatmap)
            clock.lap("gradcam_and_overlay")
            tumour_label, tumour_heatmap = "", None
            if run.tumour[i] is not None:
                tumour_label = CLASS_NAMES[run.tumour[i]]
                tumour_cam = self._cam_from(self.cam, features, run.tumour_gradients, row=i, count=len(prepared))
                tumour_heatmap = np.clip(map_to_scan(tumour_cam, prepared[i]), 0.0, 1.0)
                clock.lap("tumour_heatmap")
            results.append(
                AnalysisResult(
                    label=CLASS_NAMES[int(np.argmax(probabilities[i]))],
                    probabilities={name: float(p) for name, p in zip(CLASS_NAMES, probabilities[i], strict=True)},
                    heatmap=heatmap,
                    overlay_png=overlay,
                    model_version=self.model_version,
                    timings_ms=clock.laps(),
                    ood_score=ood_score,
                    out_of_distribution=self.ood_gate is not None and self.ood_gate.is_out_of_distribution(ood_score),
                    ood_threshold=self.ood_gate.threshold if self.ood_gate else float("nan"),
                    ood_gate=self.ood_gate.statistics_sha256 if self.ood_gate else "",
                    tumour_label=tumour_label,
                    tumour_heatmap=tumour_heatmap,
                )
            )
        return results

    def explain(self, data: bytes, label: str) -> np.ndarray:
        """The heatmap for class `label` (any class, not only the predicted one), with the same
        shape rules as `analyze`'s: float32 at the scan's height × width, in [0, 1]."""
        if label not in CLASS_NAMES:
            raise ValueError(f"unknown class {label!r}; known: {', '.join(CLASS_NAMES)}")
        prepared = prepare(decode_gray_bounded(data), self.input_size, self.head_crop)
        _logits, features, gradients = self.probe(prepared, CLASS_NAMES.index(label), self.cam.flip)
        return np.clip(map_to_scan(self._cam_from(self.cam, features, gradients), prepared), 0.0, 1.0)

    def cam_maps(self, prepared: Prepared, class_index: int, specs: dict[str, CamSpec]) -> dict[str, np.ndarray]:
        """Several methods' maps over the model input from one pass (their layers must be among
        `layer_names`); for comparing methods, not for serving."""
        _logits, features, gradients = self.probe(prepared, class_index, any(s.flip for s in specs.values()))
        plain = [f[:1] for f in features], [g[:1] for g in gradients]
        return {
            name: self._cam_from(spec, features, gradients) if spec.flip else self._cam_from(spec, *plain)
            for name, spec in specs.items()
        }

    def class_logits(self, pixels: np.ndarray) -> np.ndarray:
        """Logits of a batch of model inputs (N, size, size, 3); for Score-CAM, not serving."""
        return np.asarray(self._model.predict_on_batch(pixels), dtype=np.float64)


def enable_gpu_memory_growth(tf: Any) -> None:
    """Take GPU memory as needed instead of all of it at start, so several worker processes can
    share one GPU (each holds one model). Must run before TensorFlow touches the GPU."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process: too late, and harmless
            logger.warning("GPU %s already initialised; memory growth not set", gpu.name)


class _Pass(NamedTuple):
    """One traced pass (`Analyzer._run`): per layer, `features` and `gradients` hold every row
    (mirrored ones after the n scans); `tumour_gradients` the likeliest tumour class's, [] when no
    scan wanted them; `tumour[i]`: that class's index for scan i, None when it did not."""

    logits: np.ndarray
    features: list
    gradients: list
    pooled: np.ndarray
    tumour_gradients: list
    tumour: list[int | None]


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
