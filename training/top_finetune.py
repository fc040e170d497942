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
No augmentation of the cached maps: the remapped views are the only one. `--localization W`
adds training/cam_loss.py's term: the served heatmap of the external train part's boxed glioma
slices pulled into their boxes (model v5, W = 1). `--first-block N` (13 by default) moves the
cut lower: blocks N-14 train on cached block(N-1) maps (a cache folder of its own), at a higher
cost per epoch.

Run again with the same --out (and the same settings), it resumes after the last finished epoch
(the weights and the learning-rate schedule; the optimizer's moments start again); `--stop-after
N` ends a call after N epochs, to fit a session. `--check` measures the start model
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
from pathlib import Path
from typing import Any

import numpy as np

from mri.model.probabilities import calibrated_probabilities
from mri.vocabulary import CLASS_NAMES
from training.augment import SEQUENCE_REMAPS
from training.cam_loss import CAM_LAYER, box_area_on_grid, box_cells, localised_step
from training.data import DEFAULT_DATA, load_split, samples_from_keys
from training.external import (
    EXTERNAL_DATA,
    EXTERNAL_SPLIT_FILE,
    load_external_split,
    rows_for_keys,
)
from training.head_refit import candidate_card, cell_weights, remapped_items
from training.localization import Box, read_boxes

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / "var" / "top-finetune"
EXIT_FLOW = 13  # the exit flow's first block: the cut of v4's and v5's recipe, the default
FIRST_BLOCKS = range(5, 14)  # Xception blocks that open with a ReLU on the previous block's output


def cut_layer(first_block: int = EXIT_FLOW) -> str:
    """The layer whose input is cached and which, with every layer after it, trains: the first
    layer of Xception block `first_block` (13: the exit flow, v4's and v5's recipe)."""
    if first_block not in FIRST_BLOCKS:
        raise ValueError(f"first_block must be one of {FIRST_BLOCKS.start}-{FIRST_BLOCKS.stop - 1}, not {first_block}")
    return f"block{first_block}_sepconv1_act"


CUT_LAYER = cut_layer()  # its input, block12's output, is cached; it and all after it train


def cache_dir(card: Any, first_block: int = EXIT_FLOW) -> Path:
    """Where the maps of `card`'s model cut before `first_block` are cached (v4's folder for 13)."""
    return CACHE_DIR / (card.version if first_block == EXIT_FLOW else f"{card.version}-before-block{first_block}")


@dataclass(frozen=True)
class TopFinetuneConfig:
    alpha: float = 0.05  # the external train part's total weight, as a share of the merge's (v4: 0.05)
    epochs: int = 4
    lr: float = 1e-4  # cosine-decayed to 0 over all epochs
    weight_decay: float = 1e-4
    batch_size: int = 32
    seed: int = 0
    # The weight of the localisation term (training/cam_loss.py) on the external train part's
    # boxed glioma slices; 0 = none (v4). `localization_batch` boxed slices per step.
    localization: float = 0.0
    localization_batch: int = 8
    # The first Xception block trained (13: the exit flow); blocks before it stay frozen and
    # their output is cached once. Lower trains more of the backbone at a higher cost per epoch.
    first_block: int = EXIT_FLOW

    def __post_init__(self) -> None:
        cut_layer(self.first_block)  # refused before the model loads, not after


def exit_flow(model: Any, with_cam: bool = False, first_block: int = EXIT_FLOW) -> Any:
    """A Keras model block(`first_block` - 1)'s output → logits that shares the classifier's own
    layers (training it trains them), with those layers trainable and every BatchNorm frozen.
    `with_cam`: its outputs are [the served heatmap layer's maps, logits] (training/cam_loss.py)."""
    import keras

    from mri.model.folded_graph import layer_input_names

    source = model.get_layer(cut_layer(first_block)).input
    source_name = source._keras_history[0].name
    inputs = keras.Input(tuple(source.shape[1:]), name=f"block{first_block - 1}_output")
    values: dict[str, Any] = {source_name: inputs}
    names = [layer.name for layer in model.layers]
    for layer in model.layers:
        layer.trainable = False
    for layer in model.layers[names.index(source_name) + 1 :]:
        args = [values[name] for name in layer_input_names(layer)]
        values[layer.name] = layer(args if len(args) > 1 else args[0])
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    logits = values[model.layers[-1].name]
    return keras.Model(inputs, [values[CAM_LAYER], logits] if with_cam else logits)


def cut_maps(
    model: Any, card: Any, items: list[tuple[str, Any]], store: Path, batch: int = 16, first_block: int = EXIT_FLOW
) -> np.ndarray:
    """block(`first_block` - 1)'s output for each (key, loader) image (float16, N × 14 × 14 × 728),
    cached in `store` (.npy) beside the digest of the keys it holds: another image list recomputes it."""
    import hashlib

    import keras
    from tqdm import tqdm

    from mri.model.preprocessing import model_batch, preprocess_scan

    digest = hashlib.sha256("\n".join(key for key, _ in items).encode()).hexdigest()
    stamp = store.with_suffix(".sha256")
    if store.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return np.load(store, mmap_mode="r")
    extractor = keras.Model(model.inputs, model.get_layer(cut_layer(first_block)).input)
    shape = tuple(int(d) for d in extractor.output.shape[1:])
    store.parent.mkdir(parents=True, exist_ok=True)
    partial = store.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(len(items), *shape))
    for start in tqdm(range(0, len(items), batch), desc=store.stem, unit="batch", mininterval=10):
        chunk = items[start : start + batch]
        prepared = [preprocess_scan(load(), card.input_size, card.head_crop) for _key, load in chunk]
        out[start : start + len(prepared)] = np.asarray(extractor.predict_on_batch(model_batch(prepared)))
    out.flush()
    del out
    stamp.unlink(missing_ok=True)  # no moment where an old digest sits beside new maps
    partial.replace(store)
    stamp.write_text(digest + "\n")
    return np.load(store, mmap_mode="r")


def _file_items(paths: list[Path]) -> list[tuple[str, Any]]:
    return [(str(p), lambda p=p: Path(p).read_bytes()) for p in paths]


@dataclass(frozen=True)
class BoxedSlices:
    """The localisation term's data (training/cam_loss.py): which rows of the training maps are
    boxed slices, each box's share of every cell of the heatmap's grid, and the slice's class;
    `left_out`: boxed items whose box is not on the model input (see boxed_slices)."""

    rows: np.ndarray  # indices into the training maps
    inside: np.ndarray  # (n, grid, grid) float32
    classes: np.ndarray  # class indices (CLASS_NAMES)
    left_out: int = 0


MIN_BOX_KEPT = 0.5  # a boxed item is a target only if at least half its box is on the model input


def boxed_slices(
    card: Any, items: list[tuple[str, Any]], rows: list, boxes: dict, offset: int, grid: int
) -> BoxedSlices:
    """The boxed ones among the external (key, loader) items (slices, then views: a view has its
    slice's box, mapped through its own head crop), as rows `offset` + their index. Left out: an
    item whose head crop keeps less than MIN_BOX_KEPT of the box, or whose box holds no signal
    (a remapped view's head mask can blank a tumour at the brain's edge): its target would ask
    the map to sit on black."""
    from mri.intake.decode import decode_gray_bounded
    from mri.model.preprocessing import prepare

    picked, inside, classes, left_out = [], [], [], 0
    for index, ((_key, load), row) in enumerate(zip(items, rows, strict=True)):
        if row.key not in boxes:
            continue
        gray = decode_gray_bounded(load())
        prepared = prepare(gray, card.input_size, card.head_crop)
        height, width = gray.shape
        b = boxes[row.key]
        box = Box.from_yolo(b.xc, b.yc, b.w, b.h, width, height)
        cells = box_cells(prepared, box, grid)
        region = gray[max(0, int(box.y0)) : int(np.ceil(box.y1)), max(0, int(box.x0)) : int(np.ceil(box.x1))]
        if cells.sum() < MIN_BOX_KEPT * box_area_on_grid(prepared, box, grid) or not np.any(region > 0):
            left_out += 1
            continue
        picked.append(offset + index)
        inside.append(cells)
        classes.append(CLASS_NAMES.index(row.label))
    return BoxedSlices(
        np.array(picked, np.int64), np.array(inside, np.float32).reshape(-1, grid, grid),
        np.array(classes, np.int64), left_out,
    )


def training_data(
    model: Any, card: Any, start_dir: Path, data: Path, external: Path, external_split: Path, alpha: float,
    boxed: bool = False, first_block: int = EXIT_FLOW,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, BoxedSlices | None]:
    """(the cut's cached maps, soft targets, sample weights, external rows, boxed slices if asked): the
    merge's training split (targets: the start model's calibrated probabilities), then the
    external train part, then its remapped views (one-hot)."""
    split = load_split(Path(start_dir) / "split.json")
    if set(split["train"]) & set(split["val"]):
        raise ValueError("the start model's split has scans on both sides")
    samples = samples_from_keys(data, split["train"])
    cache = cache_dir(card, first_block)
    merge = cut_maps(
        model, card, _file_items([s.path for s in samples]), cache / "merge-train.npy", first_block=first_block
    )
    # The start model's own logits, from the same cached maps (before any training), a chunk at a time.
    start = exit_flow(model, first_block=first_block)
    logits = np.concatenate(
        [start.predict(np.asarray(merge[i : i + 256], np.float32), verbose=0) for i in range(0, len(merge), 256)]
    )
    rows = rows_for_keys(external, load_external_split(external_split)["train"])
    slice_items, view_items = _file_items([external / r.key for r in rows]), remapped_items(external, rows)
    slices = cut_maps(model, card, slice_items, cache / "external-train.npy", first_block=first_block)
    views = cut_maps(model, card, view_items, cache / "external-train-views.npy", first_block=first_block)
    external_rows = rows + [r for r in rows for _ in SEQUENCE_REMAPS]
    one_hot = np.eye(len(CLASS_NAMES))[[CLASS_NAMES.index(r.label) for r in external_rows]]
    x = np.concatenate([merge, slices, views])
    targets = np.concatenate([calibrated_probabilities(logits, card.temperature), one_hot]).astype(np.float32)
    weights = np.concatenate([np.ones(len(samples)), cell_weights(external_rows, alpha * len(samples))])
    located = None
    if boxed:
        located = boxed_slices(
            card, slice_items + view_items, external_rows, read_boxes(external / "boxes.csv"), len(samples),
            grid=int(model.get_layer(CAM_LAYER).output.shape[1]),
        )
    return x, targets, (weights / weights.mean()).astype(np.float32), external_rows, located


def fit_exit_flow(
    exit_model: Any, x: np.ndarray, targets: np.ndarray, weights: np.ndarray, config: TopFinetuneConfig,
    run_dir: Path, run_key: dict | None = None, stop_after: int | None = None, boxed: BoxedSlices | None = None,
) -> list[dict]:
    """Epochs of weighted soft-target cross-entropy (with `config.localization` > 0, plus the
    localisation term on `boxed`; `exit_model` then is `exit_flow(model, with_cam=True)`).
    After each, the exit flow's weights
    (`epoch-N.weights.h5`) and then the state (`state.json`, replaced whole) are saved in
    `run_dir`; a later call with the same config and `run_key` resumes after the last finished
    epoch (another config is refused, not mixed in). `stop_after`: at most this many epochs in
    this call (a CPU session's budget)."""
    import keras

    state_file = run_dir / "state.json"
    key = {"config": asdict(config), **(run_key or {})}
    state = json.loads(state_file.read_text()) if state_file.exists() else {"key": key, "epochs_done": 0, "log": []}
    # A run started before a config field existed ran with its default (e.g. no localisation term).
    state["key"]["config"] = {**asdict(TopFinetuneConfig()), **state["key"].get("config", {})}
    if state["key"] != key:
        raise ValueError(f"{run_dir} holds a run of another configuration ({state['key']}); use another --out")
    if state["epochs_done"]:
        exit_model.load_weights(run_dir / f"epoch-{state['epochs_done']}.weights.h5")
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    schedule = shifted_schedule(
        keras.optimizers.schedules.CosineDecay(config.lr, steps_per_epoch * config.epochs),
        state["epochs_done"] * steps_per_epoch,
    )
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    if config.localization:
        if boxed is None or not len(boxed.rows) or len(exit_model.outputs) != 2:
            raise ValueError("the localisation term needs boxed slices and exit_flow(model, with_cam=True)")
        optimizer.build(exit_model.trainable_variables)
        step = localised_step(exit_model, optimizer, config.localization)
    else:
        exit_model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    last = config.epochs if stop_after is None else min(config.epochs, state["epochs_done"] + stop_after)
    for epoch in range(state["epochs_done"], last):
        started = time.monotonic()
        keras.utils.set_random_seed(config.seed + epoch)  # dropout in the head
        order = np.random.default_rng(config.seed + epoch).permutation(len(x))
        picks = np.random.default_rng(10_000 + config.seed + epoch)
        losses, outside = [], []
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            inputs = np.asarray(x[batch], np.float32)
            if not config.localization:
                losses.append(float(exit_model.train_on_batch(inputs, targets[batch], weights[batch])))
                continue
            pick = picks.choice(len(boxed.rows), size=min(config.localization_batch, len(boxed.rows)), replace=False)
            cross_entropy, share = step(
                inputs, targets[batch], weights[batch], np.asarray(x[boxed.rows[pick]], np.float32),
                boxed.inside[pick], boxed.classes[pick],
            )
            losses.append(float(cross_entropy) + config.localization * float(share))
            outside.append(float(share))
        exit_model.save_weights(run_dir / f"epoch-{epoch + 1}.weights.h5")
        minutes = round((time.monotonic() - started) / 60, 2)
        state["epochs_done"] = epoch + 1
        state["log"].append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 5), "minutes": minutes,
                             **({"outside_box": round(float(np.mean(outside)), 4)} if outside else {})})
        temporary = state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1) + "\n")
        temporary.replace(state_file)
        print(f"epoch {epoch + 1}/{config.epochs}: loss {state['log'][-1]['loss']} ({minutes} min)", flush=True)
    return state["log"]


def shifted_schedule(inner: Any, offset: int) -> Any:
    """The learning-rate schedule `inner` read `offset` steps later: a resumed run's optimizer
    starts at step 0, the schedule where the interrupted run stopped."""
    import keras

    class ShiftedSchedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step: Any) -> Any:
            return inner(step + offset)

        def get_config(self) -> dict:  # not saved with the model: only weights are
            return {"inner": keras.optimizers.schedules.serialize(inner), "offset": offset}

    return ShiftedSchedule()


def quick_validation(
    model: Any, card: Any, start_dir: Path, data: Path, external: Path, external_split: Path,
    first_block: int = EXIT_FLOW,
) -> dict:
    """What promote will weigh, measured fast on the cut's cached maps of the start model (the
    frozen blocks are the same): the original validation split (temperature fitted on it, as calibrate
    does) and the external validation part's tumour slices called a tumour, per sequence (the
    gate left out: `evaluate --part val` counts it)."""
    from training.calibrate import fit_temperature
    from training.external import SEQUENCE_NAMES
    from training.metrics import summarize

    exit_model = exit_flow(model, first_block=first_block)
    split = load_split(Path(start_dir) / "split.json")
    samples = samples_from_keys(data, split["val"])
    cache = cache_dir(card, first_block)
    val = cut_maps(
        model, card, _file_items([s.path for s in samples]), cache / "merge-val.npy", first_block=first_block
    )
    rows = rows_for_keys(external, load_external_split(external_split)["val"])
    ext = cut_maps(
        model, card, _file_items([external / r.key for r in rows]), cache / "external-val.npy", first_block=first_block
    )
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
    stop_after: int | None = None,
) -> dict:
    from mri.card import write_card
    from mri.model.store import load_classifier

    started = time.monotonic()
    model, card = load_classifier(start_dir)
    x, targets, weights, external_rows, boxed = training_data(
        model, card, start_dir, data, external, external_split, config.alpha, boxed=config.localization > 0,
        first_block=config.first_block,
    )
    if boxed is not None:
        print(f"localisation term: {len(boxed.rows)} boxed items, {boxed.left_out} left out (box off the input)")
    run_dir = Path(out_dir).with_name(Path(out_dir).name + ".run")
    run_dir.mkdir(parents=True, exist_ok=True)
    checks = {}
    if check:
        checks["start"] = quick_validation(
            model, card, start_dir, data, external, external_split, config.first_block
        )
        print(f"start model {card.version}: {json.dumps(checks['start'])}", flush=True)
    exit_model = exit_flow(model, with_cam=config.localization > 0, first_block=config.first_block)
    log = fit_exit_flow(
        exit_model, x, targets, weights, config, run_dir, run_key={"start_model": card.version},
        stop_after=stop_after, boxed=boxed,
    )
    if len(log) < config.epochs:  # a session's budget: resumed by the same command
        print(f"{len(log)} of {config.epochs} epochs done; run the same command again to go on")
        return {}
    if check:
        checks["candidate"] = quick_validation(
            model, card, start_dir, data, external, external_split, config.first_block
        )
        print(f"candidate: {json.dumps(checks['candidate'])}", flush=True)

    out_dir = Path(out_dir)
    new_card = candidate_card(
        card,
        model,
        out_dir,
        external_rows,
        external_split,
        recipe={
            "method": f"blocks {config.first_block}-14 and head fine-tuned on cached block{config.first_block - 1} "
            "maps (training/top_finetune.py)",
            **asdict(config),
            "epochs_log": log,
            **({"boxed_items": len(boxed.rows), "boxed_left_out": boxed.left_out} if boxed is not None else {}),
            **({"quick_check": checks} if checks else {}),
        },
        command=command,
        hardware=f"CPU (blocks 1-{config.first_block - 1} frozen: their output cached once, the rest trained on it)",
        train_wall_minutes=round((time.monotonic() - started) / 60, 2),
    )
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
    parser.add_argument(
        "--stop-after", type=int, default=None, metavar="N",
        help="train at most N epochs in this call (a session's budget); the same command resumes",
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
        command="python -m training " + shlex.join(sys.argv[1:]), check=args.check, stop_after=args.stop_after,
    )
    if not card:
        return 0
    print(f"{card['version']}: {card['architecture']} → {args.out} ({card['train_wall_minutes']} min)")
    return 0
