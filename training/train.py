"""Transfer learning of Xception on the packed scans, in two phases, with checkpoints and resume.

Phase 1 trains the head on a frozen backbone; phase 2 fine-tunes the backbone from
`first_block` on with a low, cosine-decayed learning rate. BatchNorm stays in inference mode in
both (see mri.model.definition). Written against Keras alone, so the same code runs on TensorFlow
here and on JAX on a GPU machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from mri.model.preprocessing import to_model_input
from training.augment import augment, center
from training.pack import Pack


@dataclass
class TrainConfig:
    """The one home of the training recipe's defaults: `python -m training train --help` reads
    them from here, and the model card records the instance a model was trained with."""

    input_size: int = 224
    batch_size: int = 32
    head_epochs: int = 2
    finetune_epochs: int = 18
    head_lr: float = 1e-3
    finetune_lr: float = 2e-4
    weight_decay: float = 1e-5
    first_block: int = 1
    dropout: float = 0.3
    seed: int = 1337
    workers: int = 2
    mixed_precision: bool = False
    deadline_minutes: float = 0.0  # 0: no deadline
    verbose: int = 1
    # Serving crop the pack was prepared with (mri.model.preprocessing.HEAD_CROPS); goes into the card.
    head_crop: str = "lit"
    # Start from a shipped model's verified weights instead of ImageNet ("" = ImageNet/none).
    init_model: str = ""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """The recipe `python -m training train` was given: each field from the argument of the
        same name (the parser's defaults are this class's)."""
        values = {field.name: getattr(args, field.name) for field in fields(cls)}
        values["init_model"] = str(values["init_model"] or "")
        return cls(**values)


def architecture_of(model: Any) -> str:
    """The model card's architecture line, read from the built model's head (mri.model.definition
    `HEAD_LAYERS`), so it says what was trained: "Xception (ImageNet) → GAP → Dense(256, ReLU)
    → Dropout(0.3) → 4 logits"."""
    from mri.model.definition import HEAD_LAYERS

    parts = ["Xception (ImageNet)"]
    for layer in (model.get_layer(name) for name in HEAD_LAYERS if name != "pixels"):
        kind = type(layer).__name__
        if kind == "GlobalAveragePooling2D":
            parts.append("GAP")
        elif kind == "Dropout":
            parts.append(f"Dropout({layer.rate:g})")
        elif layer.name == "logits":
            parts.append(f"{layer.units} logits")
        elif kind == "Dense":
            activation = getattr(layer.activation, "__name__", "linear")
            parts.append(f"Dense({layer.units}, {'ReLU' if activation == 'relu' else activation})")
        else:
            parts.append(kind)
    return " → ".join(parts)


def make_sequence(pack: Pack, indices: np.ndarray, config: TrainConfig, training: bool) -> Any:
    import keras

    class ScanBatches(keras.utils.PyDataset):
        """Batches of (pixels, label, weight); augmentation is seeded by (seed, epoch, batch)."""

        def __init__(self) -> None:
            super().__init__(workers=config.workers, use_multiprocessing=False, max_queue_size=16)
            self.epoch = 0
            self.order = self._order()

        def _order(self) -> np.ndarray:
            if not training:
                return indices
            return np.random.default_rng([config.seed, self.epoch]).permutation(indices)

        def __len__(self) -> int:
            # Every batch has the same shape, so a compiled step (XLA/JAX) is never rebuilt:
            # training drops the last partial batch, validation pads it with zero-weight scans.
            rounding = math.floor if training else math.ceil
            return max(1, rounding(len(indices) / config.batch_size))

        def __getitem__(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            chosen = self.order[batch * config.batch_size : (batch + 1) * config.batch_size]
            weights = np.ones(config.batch_size, dtype=np.float32)
            weights[len(chosen) :] = 0.0
            chosen = np.concatenate([chosen, np.repeat(chosen[:1], config.batch_size - len(chosen))])
            rng = np.random.default_rng([config.seed, self.epoch, batch])
            if training:
                images = [augment(pack.image(i), config.input_size, rng) for i in chosen]
            else:
                images = [center(pack.image(i), config.input_size) for i in chosen]
            return to_model_input(np.stack(images)), pack.labels[chosen].astype(np.int32), weights

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = self._order()

    return ScanBatches()


class Checkpoint:
    """Saves the model (with optimizer state) and the progress after every epoch."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.model_path = self.run_dir / "checkpoint.keras"
        self.state_path = self.run_dir / "state.json"

    def state(self) -> dict:
        return (
            json.loads(self.state_path.read_text()) if self.state_path.exists() else {"phase": None, "epochs_done": 0}
        )

    def callback(self, phase: str) -> Any:
        import keras

        checkpoint = self

        class Save(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                self.model.save(checkpoint.model_path)
                checkpoint.state_path.write_text(json.dumps({"phase": phase, "epochs_done": epoch + 1}))

        return Save()


def deadline_callback(minutes: float) -> Any:
    import keras

    class Deadline(keras.callbacks.Callback):
        """Stops after the epoch that crosses the time budget; the last checkpoint is kept."""

        def __init__(self) -> None:
            super().__init__()
            self.end = time.monotonic() + minutes * 60

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if time.monotonic() > self.end:
                print(f"deadline of {minutes} min reached after epoch {epoch + 1}", flush=True)
                self.model.stop_training = True

    return Deadline()


def train(pack: Pack, run_dir: Path, config: TrainConfig, backbone_weights: str | None, resume: bool = False) -> Any:
    """Train (or resume) in `run_dir`; returns the trained Keras model."""
    import keras

    from mri.model.definition import build_classifier, set_trainable_blocks

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")

    train_batches = make_sequence(pack, pack.indices("train"), config, training=True)
    # A pack may hold the training split only (carried to a GPU machine); then validation is
    # done afterwards through the serving path on the original files (`calibrate`, `evaluate`).
    val_indices = pack.indices("val")
    val_batches = make_sequence(pack, val_indices, config, training=False) if len(val_indices) else None
    checkpoint = Checkpoint(run_dir)
    state = checkpoint.state() if resume else {"phase": None, "epochs_done": 0}
    history_file = run_dir / "history.csv"
    if not resume:
        history_file.unlink(missing_ok=True)
    # Appending, so the fine-tuning phase adds to the head phase's rows instead of replacing them.
    history = keras.callbacks.CSVLogger(str(history_file), append=True)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    extra = [deadline_callback(config.deadline_minutes)] if config.deadline_minutes else []
    started = time.monotonic()

    if state["phase"] is not None and checkpoint.model_path.exists():
        model = keras.models.load_model(checkpoint.model_path)
        print(
            f"resuming from {checkpoint.model_path}: phase {state['phase']}, {state['epochs_done']} epochs done",
            flush=True,
        )
    else:
        if config.init_model:
            # Convolutions and pooling do not depend on the input size: any size can start here.
            from mri.card import read_card
            from mri.model.store import verified_weights

            start = read_card(Path(config.init_model))
            model = build_classifier(config.input_size, None, config.dropout, head_units=start.head_units)
            model.set_weights(verified_weights(Path(config.init_model), start))
        else:
            model = build_classifier(config.input_size, backbone_weights, config.dropout)

    done = state["epochs_done"]
    if state["phase"] in (None, "head") and done < config.head_epochs:
        if state["phase"] is None:
            set_trainable_blocks(model, None)
            model.compile(optimizer=keras.optimizers.Adam(config.head_lr), loss=loss, weighted_metrics=["accuracy"])
        model.fit(
            train_batches,
            validation_data=val_batches,
            epochs=config.head_epochs,
            initial_epoch=done,
            callbacks=[history, checkpoint.callback("head"), *extra],
            verbose=config.verbose,
        )
        done = config.head_epochs
        if model.stop_training:
            return model

    total = config.head_epochs + config.finetune_epochs
    if done < total:
        if state["phase"] != "finetune":
            set_trainable_blocks(model, config.first_block)
            schedule = keras.optimizers.schedules.CosineDecay(
                config.finetune_lr, decay_steps=config.finetune_epochs * len(train_batches), alpha=0.01
            )
            model.compile(
                optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
                loss=loss,
                weighted_metrics=["accuracy"],
            )
        model.fit(
            train_batches,
            validation_data=val_batches,
            epochs=total,
            initial_epoch=done,
            callbacks=[history, checkpoint.callback("finetune"), *extra],
            verbose=config.verbose,
        )
    print(f"training took {(time.monotonic() - started) / 60:.1f} min", flush=True)
    return model


def read_history(run_dir: Path) -> list[dict]:
    with open(Path(run_dir) / "history.csv") as handle:
        return list(csv.DictReader(handle))


def plot_history(run_dir: Path, out_path: Path) -> None:
    """Loss and accuracy per epoch, training and validation, as a PNG."""
    from training.plots import pyplot

    plt = pyplot()

    rows = read_history(run_dir)
    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        axis.plot(epochs, [float(r[metric]) for r in rows], label="train (augmented)")
        if rows and f"val_{metric}" in rows[0]:
            axis.plot(epochs, [float(r[f"val_{metric}"]) for r in rows], label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
