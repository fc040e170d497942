"""`python -m training top-finetune`: Xception's exit flow (blocks 13-14) and the head fine-tuned
on a CPU, from cached block12 maps (issue 16, when no GPU is lent).

Model v3 re-fitted only the head on frozen pooled features (training/head_refit.py); what it could
not move lives in the backbone. A full fine-tune needs a GPU; but everything under block13 is
frozen in the top-block recipe anyway, so its output (block12's, 14×14×728 at 224 px) is computed
once per image and cached (float16, ~1.7 GB for the training set), and each epoch runs only the
exit flow and the head: minutes on two cores instead of the 12-20 the whole forward pass costs.
Same data and weighting as head_refit: the start model's training split with its own calibrated
probabilities as targets (distillation), the external set's **train part** with three
intensity-remapped views per slice, one-hot, every (label, sequence) cell weighted alike and the
external data together `alpha` × the merge. BatchNorm stays frozen (inference statistics).
No augmentation of the cached maps: the remapped views are the only one.

Run again with the same --out, it resumes after the last finished epoch (the weights and the
learning-rate schedule; the optimizer's moments start again). `--check` measures the start model
and the candidate fast on cached maps (quick_validation) before the slow pipeline.
The output is a complete model folder; then, as for any candidate: calibrate, ood fit,
explain-eval --ship, evaluate --part val --record-card, promote.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mri.model.probabilities import calibrated_probabilities
from mri.vocabulary import CLASS_NAMES
from training.augment import SEQUENCE_REMAPS
from training.data import DEFAULT_DATA, load_split, samples_from_keys
from training.external import (
    EXTERNAL_DATA,
    EXTERNAL_SPLIT_FILE,
    SOURCE_TERMS,
    TRAINING_MERGE_SOURCES,
    load_external_split,
    rows_for_keys,
)
from training.head_refit import _remapped_loader, cell_weights

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / "var" / "top-finetune"
CUT_LAYER = "block13_sepconv1_act"  # its input, block12's output, is cached; it and all after it train


@dataclass(frozen=True)
class TopFinetuneConfig:
    alpha: float = 0.1  # the external train part's total weight, as a share of the merge's
    epochs: int = 4
    lr: float = 1e-4  # cosine-decayed to 0 over all epochs
    weight_decay: float = 1e-4
    batch_size: int = 32
    seed: int = 0


def exit_flow(model: Any) -> Any:
    """A Keras model block12's output → logits that shares the classifier's own layers (training
    it trains them), with those layers trainable and every BatchNorm frozen."""
    import keras

    from mri.model.folded_graph import layer_input_names

    source = model.get_layer(CUT_LAYER).input
    source_name = source._keras_history[0].name
    inputs = keras.Input(tuple(source.shape[1:]), name="block12_output")
    values: dict[str, Any] = {source_name: inputs}
    names = [layer.name for layer in model.layers]
    for layer in model.layers:
        layer.trainable = False
    for layer in model.layers[names.index(source_name) + 1 :]:
        args = [values[name] for name in layer_input_names(layer)]
        values[layer.name] = layer(args if len(args) > 1 else args[0])
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    return keras.Model(inputs, values[model.layers[-1].name])


def cut_maps(model: Any, card: Any, loaders: list, store: Path, batch: int = 16) -> np.ndarray:
    """block12's output for each image (float16, N × 14 × 14 × 728), cached in `store` (.npy)."""
    import keras
    from tqdm import tqdm

    from mri.model.preprocessing import model_batch, preprocess_scan

    if store.exists():
        maps = np.load(store, mmap_mode="r")
        if len(maps) == len(loaders):
            return maps
    extractor = keras.Model(model.inputs, model.get_layer(CUT_LAYER).input)
    shape = tuple(int(d) for d in extractor.output.shape[1:])
    store.parent.mkdir(parents=True, exist_ok=True)
    partial = store.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(len(loaders), *shape))
    for start in tqdm(range(0, len(loaders), batch), desc=store.stem, unit="batch", mininterval=10):
        prepared = [preprocess_scan(load(), card.input_size, card.head_crop) for load in loaders[start : start + batch]]
        out[start : start + len(prepared)] = np.asarray(extractor.predict_on_batch(model_batch(prepared)))
    out.flush()
    del out
    partial.replace(store)
    return np.load(store, mmap_mode="r")


def _file_loaders(paths: list[Path]) -> list:
    return [lambda p=p: Path(p).read_bytes() for p in paths]


def training_data(
    model: Any, card: Any, start_dir: Path, data: Path, external: Path, external_split: Path, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(block12 maps, soft targets, sample weights, external rows): the merge's training split
    (targets: the start model's calibrated probabilities), then the external train part, then
    its remapped views (one-hot)."""
    split = load_split(Path(start_dir) / "split.json")
    if set(split["train"]) & set(split["val"]):
        raise ValueError("the start model's split has scans on both sides")
    samples = samples_from_keys(data, split["train"])
    cache = CACHE_DIR / card.version
    merge = cut_maps(model, card, _file_loaders([s.path for s in samples]), cache / "merge-train.npy")
    # The start model's own logits, from the same cached maps (before any training).
    logits = exit_flow(model).predict(np.asarray(merge, np.float32), batch_size=64, verbose=0)
    rows = rows_for_keys(external, load_external_split(external_split)["train"])
    slices = cut_maps(model, card, _file_loaders([external / r.key for r in rows]), cache / "external-train.npy")
    # A slice's views share its seed (its index in the train part), as head_refit's do.
    view_loaders = [_remapped_loader(external / r.key, kind, i) for i, r in enumerate(rows) for kind in SEQUENCE_REMAPS]
    views = cut_maps(model, card, view_loaders, cache / "external-train-views.npy")
    external_rows = rows + [r for r in rows for _ in SEQUENCE_REMAPS]
    one_hot = np.eye(len(CLASS_NAMES))[[CLASS_NAMES.index(r.label) for r in external_rows]]
    x = np.concatenate([merge, slices, views])
    targets = np.concatenate([calibrated_probabilities(logits, card.temperature), one_hot]).astype(np.float32)
    weights = np.concatenate([np.ones(len(samples)), cell_weights(external_rows, alpha * len(samples))])
    return x, targets, (weights / weights.mean()).astype(np.float32), external_rows


def fit_exit_flow(
    exit_model: Any, x: np.ndarray, targets: np.ndarray, weights: np.ndarray, config: TopFinetuneConfig,
    run_dir: Path,
) -> list[dict]:
    """Epochs of weighted soft-target cross-entropy; after each, the exit flow's weights and a
    log line are saved in `run_dir`, from which a later call resumes."""
    import keras

    state_file, weights_file = run_dir / "state.json", run_dir / "exit_flow.weights.h5"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"epochs_done": 0, "log": []}
    if state["epochs_done"]:
        exit_model.load_weights(weights_file)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    schedule = _Shifted(
        keras.optimizers.schedules.CosineDecay(config.lr, steps_per_epoch * config.epochs),
        state["epochs_done"] * steps_per_epoch,
    )
    exit_model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    for epoch in range(state["epochs_done"], config.epochs):
        started = time.monotonic()
        keras.utils.set_random_seed(config.seed + epoch)  # dropout in the head
        order = np.random.default_rng(config.seed + epoch).permutation(len(x))
        losses = []
        for start in range(0, len(order), config.batch_size):
            batch = np.sort(order[start : start + config.batch_size])  # sorted: memory-mapped reads
            loss = exit_model.train_on_batch(np.asarray(x[batch], np.float32), targets[batch], weights[batch])
            losses.append(float(loss))
        exit_model.save_weights(weights_file)
        state["epochs_done"] = epoch + 1
        minutes = round((time.monotonic() - started) / 60, 2)
        state["log"].append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 5), "minutes": minutes})
        state_file.write_text(json.dumps(state, indent=1) + "\n")
        print(f"epoch {epoch + 1}/{config.epochs}: loss {state['log'][-1]['loss']} ({minutes} min)", flush=True)
    return state["log"]


def _Shifted(inner: Any, offset: int) -> Any:
    """`inner` (a learning-rate schedule) read `offset` steps later: a resumed run goes on where
    the interrupted one stopped."""
    import keras

    class Shifted(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step: Any) -> Any:
            return inner(step + offset)

        def get_config(self) -> dict:
            return {"offset": offset}

    return Shifted()


def quick_validation(model: Any, card: Any, start_dir: Path, external: Path, external_split: Path) -> dict:
    """What promote will weigh, measured fast on cached block12 maps of the start model (blocks
    1-12 are the same): the original validation split (temperature fitted on it, as calibrate
    does) and the external validation part's tumour slices called a tumour, per sequence (the
    gate left out: `evaluate --part val` counts it)."""
    from training.calibrate import fit_temperature
    from training.external import SEQUENCE_NAMES
    from training.metrics import summarize

    exit_model = exit_flow(model)
    split = load_split(Path(start_dir) / "split.json")
    samples = samples_from_keys(DEFAULT_DATA, split["val"])
    cache = CACHE_DIR / card.version
    val = cut_maps(model, card, _file_loaders([s.path for s in samples]), cache / "merge-val.npy")
    rows = rows_for_keys(external, load_external_split(external_split)["val"])
    ext = cut_maps(model, card, _file_loaders([external / r.key for r in rows]), cache / "external-val.npy")
    true = np.array([s.label for s in samples])
    logits = exit_model.predict(np.asarray(val, np.float32), batch_size=32, verbose=0)
    temperature = fit_temperature(logits, true)
    merge = summarize(calibrated_probabilities(logits, temperature), true, CLASS_NAMES)
    called = exit_model.predict(np.asarray(ext, np.float32), batch_size=32, verbose=0).argmax(axis=1)
    notumor = CLASS_NAMES.index("notumor")
    per_sequence = {}
    for sequence in sorted({r.sequence for r in rows}):
        tumour = [i for i, r in enumerate(rows) if r.sequence == sequence and r.label != "notumor"]
        clear = [i for i, r in enumerate(rows) if r.sequence == sequence and r.label == "notumor"]
        per_sequence[SEQUENCE_NAMES[sequence]] = {
            "tumour_called_tumour": round(float(np.mean(called[tumour] != notumor)), 4) if tumour else None,
            "tumour_free_called_no_tumour": round(float(np.mean(called[clear] == notumor)), 4) if clear else None,
        }
    tumours = [i for i, r in enumerate(rows) if r.label != "notumor"]
    return {
        "merge_val": {"accuracy": round(merge["accuracy"], 5), "ece_15": round(merge["ece_15"], 5),
                      "temperature": round(temperature, 4)},
        "external_val": {"tumour_called_tumour": round(float(np.mean(called[tumours] != notumor)), 4),
                         "per_sequence": per_sequence},
    }


def top_finetune(
    start_dir: Path,
    out_dir: Path,
    config: TopFinetuneConfig,
    data: Path = DEFAULT_DATA,
    external: Path = EXTERNAL_DATA,
    external_split: Path = EXTERNAL_SPLIT_FILE,
    command: str = "",
    check: bool = False,
) -> dict:
    from mri.card import write_card
    from mri.model.store import load_classifier, save_weights_fp16
    from training.commands import library_versions
    from training.train import architecture_of

    started = time.monotonic()
    model, card = load_classifier(start_dir)
    x, targets, weights, external_rows = training_data(
        model, card, start_dir, data, external, external_split, config.alpha
    )
    run_dir = Path(out_dir).with_name(Path(out_dir).name + ".run")
    run_dir.mkdir(parents=True, exist_ok=True)
    checks = {}
    if check:
        checks["start"] = quick_validation(model, card, start_dir, external, external_split)
        print(f"start model {card.version}: {json.dumps(checks['start'])}", flush=True)
    exit_model = exit_flow(model)
    log = fit_exit_flow(exit_model, x, targets, weights, config, run_dir)
    if check:
        checks["candidate"] = quick_validation(model, card, start_dir, external, external_split)
        print(f"candidate: {json.dumps(checks['candidate'])}", flush=True)

    out_dir = Path(out_dir)
    new_card = {
        key: value
        for key, value in card.items()
        # Figures of the start model do not describe this one: the pipeline measures them again.
        if key not in ("validation", "check_list", "ood", "sequences", "heatmap_method", "heatmap_localization",
                       "training_history", "history", "temperature", "libraries", "libraries_note", "pack_command",
                       "training_history_note", "recipe", "external_validation")
    }
    now = datetime.now(UTC)
    new_card.update(
        {
            "version": f"brain-xception-{now:%Y%m%d-%H%M}",
            "created": now.isoformat(timespec="seconds"),
            "architecture": architecture_of(model),
            "weights_sha256": save_weights_fp16(model, out_dir),
            "temperature": 1.0,
            "recipe": {
                "method": "exit flow (blocks 13-14) and head fine-tuned on cached block12 maps "
                "(training/top_finetune.py)",
                **asdict(config),
                "epochs_log": log,
                **({"quick_check": checks} if checks else {}),
            },
            "init_model": card.version,
            "command": command,
            "hardware": "CPU (blocks 1-12 frozen: their output cached once, the exit flow trained on it)",
            "libraries": library_versions(),
            "train_wall_minutes": round((time.monotonic() - started) / 60, 2),
        }
    )
    used = sorted({row.source for row in external_rows})
    new_card["data"] = {
        **card.sources,
        "trained_on_sources": TRAINING_MERGE_SOURCES
        + [f"brain-mri-external train part: {SOURCE_TERMS.get(source, source)}" for source in used],
        "external_train_groups": load_external_split(external_split)["train_groups"],
        "external_train_slices": len(external_rows) // (1 + len(SEQUENCE_REMAPS)),
        "external_train_views": list(SEQUENCE_REMAPS),
    }
    write_card(out_dir, new_card)
    shutil.copyfile(Path(start_dir) / "split.json", out_dir / "split.json")
    return new_card


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "top-finetune",
        help="fine-tune blocks 13-14 and the head on cached block12 maps (CPU): the training split "
        "(distilled) plus the external train part",
    )
    parser.add_argument("--model", type=Path, required=True, help="start model folder (e.g. models/brain-xception)")
    parser.add_argument(
        "--out", type=Path, required=True, help="the candidate model folder to write (checkpoints: OUT.run/)"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--external", type=Path, default=EXTERNAL_DATA)
    parser.add_argument("--external-split", type=Path, default=EXTERNAL_SPLIT_FILE)
    parser.add_argument(
        "--check", action="store_true", help="measure the start model and the candidate fast on cached maps"
    )
    for name, value in asdict(TopFinetuneConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    config = TopFinetuneConfig(**{name: getattr(args, name) for name in asdict(TopFinetuneConfig())})
    card = top_finetune(
        args.model, args.out, config, data=args.data, external=args.external, external_split=args.external_split,
        command="python -m training " + shlex.join(sys.argv[1:]), check=args.check,
    )
    print(f"{card['version']}: {card['architecture']} → {args.out} ({card['train_wall_minutes']} min)")
    return 0
