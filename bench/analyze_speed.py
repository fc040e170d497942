"""Per-scan analysis time: our runtime against the reference app's per-request path.

The reference (the Flask app we replace), rebuilt here with the same Xception backbone at its
299 px input: Pillow open → RGB → resize 299 → preprocess_input → model.predict; then a new
keras.Model(inputs, [block14_sepconv2_act, softmax]) run again under a GradientTape, gradient
of the predicted class's probability, spatial mean, weighted sum, ReLU, / max, resize to the
image, JET colour map, 50/50 blend in OpenCV, PNG encode, base64. Both run in this process on
the same real scans; the figure that matters is the ratio.

usage: python bench/analyze_speed.py [--scans 24] [--rounds 2] [--methods gradcam layercam ...]
                                    [--model-dirs DIR ...] [--graphs folded keras]
(--methods: time analyze() with each heatmap method of mri.model.cams, against the same reference;
--model-dirs: each model folder in turn, e.g. a copy of the shipped one whose card says 256 px;
--graphs: the serving graph (folded, mri/model/folded_graph.py, in the default precision) and/or
the Keras model in float32, the path before it)

A CPU without bfloat16 dot products, on one that has them: ONEDNN_MAX_CPU_ISA=AVX2
ANALYZER_PRECISION=float32 python bench/analyze_speed.py ... (both paths then run as on an
AVX2-only CPU; docs/benchmarks.md says how close that came to a real one)
"""
from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
from PIL import Image

from training.data import DEFAULT_DATA, list_samples


def build_reference_model(source_model):
    """The reference app's classifier: same backbone and head, 299 px, softmax output."""
    import keras

    from mri.model.definition import build_classifier

    model = build_classifier(299, head_units=source_model.get_layer("head_dense").units)
    model.set_weights(source_model.get_weights())
    probabilities = keras.layers.Activation("softmax", name="softmax")(model.output)
    return keras.Model(model.inputs, probabilities)


def reference_request(model, data: bytes) -> str:
    """One request of the reference app, step by step as it did it."""
    import keras
    import tensorflow as tf

    image = Image.open(io.BytesIO(data)).convert("RGB")
    resized = image.resize((299, 299))
    # The reference called xception.preprocess_input; our model does that scaling as its first
    # layer, so it receives the 0-255 pixels here (same arithmetic, counted once).
    batch = np.expand_dims(np.asarray(resized, dtype=np.float32), 0)
    predictions = model.predict(batch, verbose=0)
    predicted = int(np.argmax(predictions[0]))
    grad_model = keras.Model(model.inputs, [model.get_layer("block14_sepconv2_act").output, model.output])
    with tf.GradientTape() as tape:
        conv_outputs, outputs = grad_model(batch)
        score = outputs[:, predicted]
    gradients = tape.gradient(score, conv_outputs)
    pooled = tf.reduce_mean(gradients, axis=(0, 1, 2))
    heatmap = tf.squeeze(conv_outputs[0] @ pooled[..., tf.newaxis])
    heatmap = tf.maximum(heatmap, 0) / (tf.reduce_max(heatmap) + 1e-8)
    original = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)
    heatmap = cv2.resize(heatmap.numpy(), (original.shape[1], original.shape[0]))
    colored = cv2.applyColorMap(np.uint8(255 * heatmap), cv2.COLORMAP_JET)
    overlay = cv2.addWeighted(original, 0.5, colored, 0.5, 0)
    _ok, png = cv2.imencode(".png", overlay)
    return base64.b64encode(png.tobytes()).decode("ascii")


def time_each(function, blobs: list[bytes]) -> list[float]:
    times = []
    for blob in blobs:
        start = time.perf_counter()
        function(blob)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=24, help="real scans, spread over the four classes")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--methods", nargs="*", default=None, help="heatmap methods (default: the shipped one)")
    parser.add_argument("--model-dirs", type=Path, nargs="*", default=None, help="default: the shipped model")
    parser.add_argument("--graphs", nargs="*", choices=("folded", "keras"), default=["folded"])
    args = parser.parse_args()

    from mri.card import DEFAULT_MODEL_DIR
    from mri.model.analyzer import Analyzer

    samples = list_samples(DEFAULT_DATA)
    chosen = [samples[i] for i in np.linspace(0, len(samples) - 1, args.scans).astype(int)]
    blobs = [s.path.read_bytes() for s in chosen]
    model_dirs = args.model_dirs or [DEFAULT_MODEL_DIR]
    analyzers = {
        (d, name, graph): Analyzer(d, cam=None if name == "shipped" else name, graph=graph)
        for d in model_dirs
        for name in (args.methods or ["shipped"])
        for graph in args.graphs
    }
    from mri.model.store import load_classifier

    reference_model = build_reference_model(load_classifier()[0])
    for blob in blobs[:2]:  # warm every path: tracing, allocators
        for analyzer in analyzers.values():
            analyzer.analyze(blob)
        reference_request(reference_model, blob)
    ours: dict[tuple[Path, str, str], list[float]] = {key: [] for key in analyzers}
    reference: list[float] = []
    for _ in range(args.rounds):  # interleaved, so a busy moment on the machine hits every path
        for key, analyzer in analyzers.items():
            ours[key] += time_each(analyzer.analyze, blobs)
        reference += time_each(lambda b: reference_request(reference_model, b), blobs)
    reference_ms = statistics.median(reference)
    device = next(iter(analyzers.values())).device
    print(f"scans: {len(blobs)} real scans × {args.rounds} rounds, on {device}, {os.cpu_count()} CPU cores")
    print(f"reference per-request path: median {reference_ms:8.1f} ms  (p90 {np.percentile(reference, 90):.1f})")
    for key, times in ours.items():
        analyzer = analyzers[key]
        method = analyzer.cam.name
        if args.model_dirs:
            method = f"{key[0].name} {analyzer.input_size} px, {method}"
        if len(args.graphs) > 1:
            method = f"{method}, {analyzer.graph} {analyzer.precision}"
        ours_ms = statistics.median(times)
        print(
            f"our analyze() [{method:>32}]: median {ours_ms:8.1f} ms  (p90 {np.percentile(times, 90):.1f})"
            f"  speed-up (reference / ours): {reference_ms / ours_ms:.2f}×"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
