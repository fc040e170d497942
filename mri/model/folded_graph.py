"""The classifier as a plain TensorFlow graph for serving: BatchNorm folded into the convolutions.

The Keras model runs each convolution, then its inference-mode BatchNorm (a per-channel scale
and shift), then the ReLU; under a GradientTape the backward pass walks every one of those ops
again. Folding the BatchNorm into the convolution's kernel (scale) and a bias (shift) gives the
same function with fewer ops each way, and lets the separable convolutions' pointwise half run
as one matrix product. The layers keep their Keras names, so the heatmap and OOD layers
(`block4_sepconv2_act`, ...) are read exactly where they were.

`compute_dtype` bfloat16 runs the backbone in bfloat16 (weights and activations; the head, the
logits and every returned tensor stay float32): on a CPU with bfloat16 dot products
(AVX512_BF16 / AMX) it is about twice as fast, and the maps and labels it gives are checked
against float32 on real scans (tests/mri/model/test_folded_graph.py). `default_compute_dtype`
picks it only where the hardware has those instructions.

Weights are constants of the traced function: serving never trains, and constants let
TensorFlow's graph optimiser fold them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PRECISION_ENV = "ANALYZER_PRECISION"  # auto (default) | float32 | bfloat16


@dataclass(frozen=True)
class _Step:
    name: str
    kind: str  # input | scale | sepconv | conv | alias | relu | maxpool | add | gap | dense
    inputs: tuple[str, ...]
    params: tuple = ()


def layer_input_names(layer: Any) -> tuple[str, ...]:
    tensors = layer.input if isinstance(layer.input, list) else [layer.input]
    return tuple(t._keras_history[0].name for t in tensors)


def _plan(model: Any) -> list[_Step]:
    """The model's layers in order, each conv carrying the BatchNorm that alone consumes it."""
    import keras

    layers = model.layers
    consumers: dict[str, list[Any]] = {}
    for layer in layers:
        if not isinstance(layer, keras.layers.InputLayer):
            for name in layer_input_names(layer):
                consumers.setdefault(name, []).append(layer)
    steps: list[_Step] = []
    for layer in layers:
        name = layer.name
        if isinstance(layer, keras.layers.InputLayer):
            steps.append(_Step(name, "input", ()))
            continue
        inputs = layer_input_names(layer)
        config = layer.get_config()
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D)):
            if config.get("activation", "linear") != "linear" or config.get("dilation_rate", (1, 1)) != (1, 1):
                raise ValueError(f"layer {name}: only linear, undilated convolutions can be folded")
            weights = [np.asarray(w, dtype=np.float32) for w in layer.get_weights()]
            separable = isinstance(layer, keras.layers.SeparableConv2D)
            depthwise, kernel = (weights[0], weights[1]) if separable else (None, weights[0])
            bias = weights[-1] if config["use_bias"] else np.zeros(kernel.shape[-1], np.float32)
            after = consumers.get(name, [])
            if len(after) == 1 and isinstance(after[0], keras.layers.BatchNormalization):
                gamma, beta, mean, variance = (np.asarray(w, dtype=np.float32) for w in after[0].get_weights())
                scale = gamma / np.sqrt(variance + after[0].epsilon)
                kernel, bias = kernel * scale, (bias - mean) * scale + beta
                folded_into = after[0].name
            else:
                folded_into = None
            stride, padding = tuple(config["strides"]), config["padding"].upper()
            if separable:
                steps.append(_Step(name, "sepconv", inputs, (depthwise, kernel[0, 0], bias, stride, padding)))
            else:
                steps.append(_Step(name, "conv", inputs, (kernel, bias, stride, padding)))
            if folded_into:
                steps.append(_Step(folded_into, "alias", (name,)))
        elif isinstance(layer, keras.layers.BatchNormalization):
            if not any(s.name == name for s in steps):
                raise ValueError(f"BatchNorm {name} follows no convolution it alone reads")
        elif isinstance(layer, keras.layers.Activation):
            if config["activation"] != "relu":
                raise ValueError(f"layer {name}: activation {config['activation']!r} not supported")
            steps.append(_Step(name, "relu", inputs))
        elif isinstance(layer, keras.layers.Rescaling):
            steps.append(_Step(name, "scale", inputs, (float(config["scale"]), float(config["offset"]))))
        elif isinstance(layer, keras.layers.MaxPooling2D):
            steps.append(
                _Step(name, "maxpool", inputs, (config["pool_size"], config["strides"], config["padding"].upper()))
            )
        elif isinstance(layer, keras.layers.Add):
            steps.append(_Step(name, "add", inputs))
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            steps.append(_Step(name, "gap", inputs))
        elif isinstance(layer, keras.layers.Dense):
            kernel, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
            steps.append(_Step(name, "dense", inputs, (kernel, bias, config["activation"])))
        elif isinstance(layer, keras.layers.Dropout):  # identity at inference
            steps.append(_Step(name, "alias", inputs))
        else:
            raise ValueError(f"layer {name}: {type(layer).__name__} has no folded form")
    return steps


def folded_call(model: Any, outputs: Sequence[str], compute_dtype: str = "float32") -> Callable[[Any], list[Any]]:
    """A function pixels (N, size, size, 3) float32 → the named layers' outputs (float32), the
    same function as `keras.Model(model.inputs, [model.get_layer(n).output ...])` in inference
    mode. Call it inside a tf.function (and a GradientTape watching the pixels for gradients)."""
    import tensorflow as tf

    dtype = tf.as_dtype(compute_dtype)
    steps = _plan(model)
    known = {s.name for s in steps}
    missing = [n for n in outputs if n not in known]
    if missing:
        raise ValueError(f"unknown layers: {', '.join(missing)}")

    def const(array: np.ndarray, as_type: Any = dtype) -> Any:
        return tf.constant(array, dtype=as_type)

    # Weights become constants once, here, not at every trace.
    ready: list[tuple[_Step, tuple]] = []
    for step in steps:
        if step.kind == "sepconv":
            depthwise, kernel, bias, stride, padding = step.params
            ready.append((step, (const(depthwise), const(kernel), const(bias), stride, padding)))
        elif step.kind == "conv":
            kernel, bias, stride, padding = step.params
            ready.append((step, (const(kernel), const(bias), stride, padding)))
        elif step.kind == "dense":  # the head stays float32
            kernel, bias, activation = step.params
            ready.append((step, (const(kernel, tf.float32), const(bias, tf.float32), activation)))
        else:
            ready.append((step, step.params))

    def call(pixels: Any) -> list[Any]:
        values: dict[str, Any] = {}
        for step, params in ready:
            args = [values[name] for name in step.inputs]
            if step.kind == "input":
                value = pixels
            elif step.kind == "scale":
                value = tf.cast(args[0] * params[0] + params[1], dtype)
            elif step.kind == "sepconv":
                depthwise, kernel, bias, stride, padding = params
                spatial = tf.nn.depthwise_conv2d(args[0], depthwise, (1, *stride, 1), padding)
                shape = tf.shape(spatial)
                # The pointwise 1×1 convolution as one matrix product over all positions.
                mixed = tf.nn.bias_add(tf.reshape(spatial, (-1, kernel.shape[0])) @ kernel, bias)
                value = tf.reshape(mixed, tf.concat([shape[:3], [kernel.shape[1]]], axis=0))
            elif step.kind == "conv":
                kernel, bias, stride, padding = params
                value = tf.nn.bias_add(tf.nn.conv2d(args[0], kernel, (1, *stride, 1), padding), bias)
            elif step.kind == "alias":
                value = args[0]
            elif step.kind == "relu":
                value = tf.nn.relu(args[0])
            elif step.kind == "maxpool":
                pool, stride, padding = params
                value = tf.nn.max_pool2d(args[0], pool, stride, padding)
            elif step.kind == "add":  # AddV2 pairs (Grappler's remapper cannot rewrite an AddN here)
                value = args[0]
                for other in args[1:]:
                    value = value + other
            elif step.kind == "gap":
                value = tf.reduce_mean(tf.cast(args[0], tf.float32), axis=[1, 2])
            else:  # dense
                kernel, bias, activation = params
                value = tf.cast(args[0], tf.float32) @ kernel + bias
                value = tf.nn.relu(value) if activation == "relu" else value
            values[step.name] = value
        return [values[name] for name in outputs]

    return call


def cpu_has_bfloat16_dot() -> bool:
    """Whether this x86 CPU has bfloat16 dot-product instructions (AVX512_BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_compute_dtype(device: str) -> str:
    """bfloat16 on a CPU that multiplies it natively, float32 elsewhere (a GPU, or a CPU
    without those instructions where bfloat16 would be emulated and slower);
    env ANALYZER_PRECISION=float32|bfloat16 overrides."""
    chosen = os.environ.get(PRECISION_ENV, "auto").strip().lower()
    if chosen in ("float32", "bfloat16"):
        return chosen
    if chosen not in ("", "auto"):
        raise ValueError(f"{PRECISION_ENV} must be auto, float32 or bfloat16, not {chosen!r}")
    return "bfloat16" if device == "CPU" and cpu_has_bfloat16_dot() else "float32"
