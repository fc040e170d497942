"""`python -m training head-refit`: model v3 without the T2 shortcut, on a CPU in minutes.

Last-layer re-training (Kirichenko et al., "Last Layer Re-Training is Sufficient for Robustness
to Spurious Correlations", ICLR 2023): the backbone's features already tell a lesion apart in
FLAIR/T2/T1 (a probe on them reads the sequence at 84 %, docs/model.md); the shortcut lives in
the head. So the backbone stays frozen and only the head (Dense → ReLU → Dropout → logits) is
re-fitted on the cached pooled block14 features (training/ood_features.py):
- the training split's scans, with the start model's own calibrated probabilities as targets
  (distillation: what it does on the training merge is kept, not re-learnt from hard labels);
- the external set's **train part** (patient groups; its validation part is never read here),
  each slice plus three intensity-remapped views (training.augment.sequence_remap: the look of
  the sequence changes, the label does not), one-hot; weighted so that every (label, sequence)
  cell weighs the same and the external data together weigh `alpha` × the merge's.
`heads` such heads (seeds seed, seed+1, …) are averaged: packed side by side into one hidden
layer `heads` × 256 wide whose logits are their mean (exactly: `pack_heads`), which evens out
the run-to-run spread a single re-fit shows on the original validation split (±2 scans).

The output is a complete model folder (the start model's backbone, the new head, a card saying
what it was trained on); then, as for any candidate: calibrate, ood fit, explain-eval --ship,
evaluate --part val --record-card, promote.
"""

from __future__ import annotations

import argparse
import io
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mri.model.probabilities import calibrated_probabilities
from mri.vocabulary import CLASS_NAMES
from training.augment import SEQUENCE_REMAP_RECIPE, SEQUENCE_REMAPS
from training.data import DEFAULT_DATA, load_split, samples_from_keys
from training.external import (
    EXTERNAL_DATA,
    EXTERNAL_SPLIT_FILE,
    SOURCE_TERMS,
    TRAINING_MERGE_SOURCES,
    ExternalSlice,
    load_external_split,
    rows_for_keys,
)

FEATURES = "pool"  # head_pool's input: block14_sepconv2_act, spatially averaged


@dataclass(frozen=True)
class HeadRefitConfig:
    heads: int = 5
    alpha: float = 0.1  # the external train part's total weight, as a share of the merge's
    epochs: int = 30
    lr: float = 3e-4
    weight_decay: float = 1e-4
    dropout: float = 0.3
    batch_size: int = 64
    seed: int = 0


# What a start model's card says of that model only: its measured figures (the pipeline measures
# the new model again), its own training and notes. A card derived from it drops them.
START_MODEL_ONLY = (
    "validation", "check_list", "ood", "sequences", "heatmap_method", "heatmap_localization", "training_history",
    "history", "temperature", "libraries", "libraries_note", "pack_command", "training_history_note", "recipe",
    "external_validation", "head_refit_note",
)  # fmt: skip


def derived_card(card: Any) -> dict:
    """The start model's card less what describes that model only (START_MODEL_ONLY)."""
    return {key: value for key, value in card.items() if key not in START_MODEL_ONLY}


def cell_weights(rows: list[ExternalSlice], total: float) -> np.ndarray:
    """A weight per slice so that each (label, sequence) cell sums to the same share of `total`."""
    cells: dict[tuple[str, str], int] = {}
    for row in rows:
        cells[row.cell] = cells.get(row.cell, 0) + 1
    return np.asarray([total / len(cells) / cells[row.cell] for row in rows], dtype=np.float64)


def pack_heads(heads: list[tuple[list[np.ndarray], list[np.ndarray]]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """k heads ((dense kernel, bias), (logits kernel, bias)) → one head whose hidden layer is the
    k hidden layers side by side and whose logits are the mean of the k heads' logits."""
    k = len(heads)
    dense = [np.concatenate([d[0] for d, _ in heads], axis=1), np.concatenate([d[1] for d, _ in heads])]
    logits = [np.concatenate([lg[0] for _, lg in heads], axis=0) / k, np.mean([lg[1] for _, lg in heads], axis=0)]
    return dense, logits


def fit_head(
    start_head: tuple[list[np.ndarray], list[np.ndarray]],
    x: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    config: HeadRefitConfig,
    seed: int,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One head, started from the start model's, fitted to soft targets with sample weights."""
    import keras

    from mri.model.definition import head as classifier_head

    keras.utils.set_random_seed(seed)
    features = keras.Input((x.shape[1],))
    head = keras.Model(features, classifier_head(features, start_head[0][0].shape[1], config.dropout))
    head.get_layer("head_dense").set_weights(start_head[0])
    head.get_layer("logits").set_weights(start_head[1])
    head.compile(
        optimizer=keras.optimizers.AdamW(config.lr, weight_decay=config.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    head.fit(
        x, targets, sample_weight=weights / weights.mean(), batch_size=config.batch_size, epochs=config.epochs,
        verbose=0, shuffle=True,
    )
    return head.get_layer("head_dense").get_weights(), head.get_layer("logits").get_weights()


def remapped_loader(path: Path, kind: str, seed: int):
    def load() -> bytes:
        from PIL import Image

        from training.augment import sequence_remap

        gray = np.asarray(Image.open(path).convert("L"))
        buffer = io.BytesIO()
        Image.fromarray(sequence_remap(gray, kind, np.random.default_rng(seed))).save(buffer, format="PNG")
        return buffer.getvalue()

    return load


def remapped_items(external: Path, rows: list[ExternalSlice]) -> list[tuple[str, Any]]:
    """(key, loader) of every external slice's SEQUENCE_REMAPS views, in slice order. A slice's
    views share its seed (its index in the train part), so cache keys stay valid."""
    return [
        (f"{external / r.key}#{kind}:{SEQUENCE_REMAP_RECIPE}", remapped_loader(external / r.key, kind, index))
        for index, r in enumerate(rows)
        for kind in SEQUENCE_REMAPS
    ]


def candidate_card(
    start_card: Any, model: Any, out_dir: Path, external_rows: list[ExternalSlice], external_split: Path,
    **fields: Any,
) -> dict:
    """The card of a model trained from `start_card` (head-refit, top-finetune): the start card
    less what describes that model only, a new version, the weights written to `out_dir`, what
    it was trained on, and `fields` (recipe, hardware, command, …) on top."""
    from mri.model.store import save_weights_fp16
    from training.commands import library_versions
    from training.train import architecture_of

    now = datetime.now(UTC)
    used = sorted({row.source for row in external_rows})
    return {
        **derived_card(start_card),
        "version": f"brain-xception-{now:%Y%m%d-%H%M}",
        "created": now.isoformat(timespec="seconds"),
        "architecture": architecture_of(model),
        "weights_sha256": save_weights_fp16(model, out_dir),
        "temperature": 1.0,
        "init_model": start_card.version,
        "libraries": library_versions(),
        **fields,
        "data": {
            **start_card.sources,
            "trained_on_sources": TRAINING_MERGE_SOURCES
            + [f"brain-mri-external train part: {SOURCE_TERMS.get(source, source)}" for source in used],
            "external_train_groups": load_external_split(external_split)["train_groups"],
            "external_train_slices": len(external_rows) // (1 + len(SEQUENCE_REMAPS)),
            "external_train_views": list(SEQUENCE_REMAPS),
        },
    }


def _decoded(found: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    """Features of images the decoder refused are NaN rows: one would make the fit NaN."""
    if not found["decoded"].all():
        raise ValueError(f"{int((~found['decoded']).sum())} {what} could not be decoded: fix or remove them")
    return found


def training_set(
    model: Any, card: Any, data: Path, split_file: Path, external: Path, external_split: Path
) -> tuple[np.ndarray, np.ndarray, list[ExternalSlice], int]:
    """(features, soft targets, the external rows in order, number of merge rows): the merge's
    training split first, then the external train part's slices, then their remapped views.
    `split_file`: the start model's own split.json (its validation scans must stay out)."""
    from training.ood_features import cached_features, cached_file_features, feature_model

    features = feature_model(model)
    split = load_split(split_file)
    if set(split["train"]) & set(split["val"]):
        raise ValueError(f"{split_file}: scans on both sides of the split")
    samples = samples_from_keys(data, split["train"])
    merge = _decoded(
        cached_file_features(
            features, card.version, card.input_size, [s.path for s in samples], "scans-train", head_crop=card.head_crop
        ),
        "training scans",
    )
    rows = rows_for_keys(external, load_external_split(external_split)["train"])
    paths = [external / r.key for r in rows]
    slices = _decoded(
        cached_file_features(features, card.version, card.input_size, paths, "external", head_crop=card.head_crop),
        "external slices",
    )
    items = remapped_items(external, rows)
    views = _decoded(
        cached_features(features, card.version, card.input_size, items, "aug-external", head_crop=card.head_crop),
        "remapped external views",
    )
    view_rows = [r for r in rows for _ in SEQUENCE_REMAPS]
    external_rows = rows + view_rows
    one_hot = np.eye(len(CLASS_NAMES))[[CLASS_NAMES.index(r.label) for r in external_rows]]
    x = np.concatenate([merge[FEATURES], slices[FEATURES], views[FEATURES]])
    targets = np.concatenate([calibrated_probabilities(merge["logits"], card.temperature), one_hot])
    return x, targets, external_rows, len(samples)


def head_refit(
    start_dir: Path,
    out_dir: Path,
    config: HeadRefitConfig,
    data: Path = DEFAULT_DATA,
    external: Path = EXTERNAL_DATA,
    external_split: Path = EXTERNAL_SPLIT_FILE,
    command: str = "",
) -> dict:
    import time

    from mri.card import write_card
    from mri.model.definition import build_classifier
    from mri.model.store import load_classifier

    started = time.monotonic()
    model, card = load_classifier(start_dir)
    split_file = Path(start_dir) / "split.json"  # the split the start model was validated on
    x, targets, external_rows, n_merge = training_set(model, card, data, split_file, external, external_split)
    weights = np.concatenate([np.ones(n_merge), cell_weights(external_rows, config.alpha * n_merge)])
    start_head = (model.get_layer("head_dense").get_weights(), model.get_layer("logits").get_weights())
    heads = [fit_head(start_head, x, targets, weights, config, config.seed + k) for k in range(config.heads)]
    dense, logits = pack_heads(heads)

    refitted = build_classifier(card.input_size, dropout=config.dropout, head_units=dense[0].shape[1])
    # Same architecture but the head's width; auto-generated layer names differ between builds,
    # so layers are matched by position.
    for source, target in zip(model.layers, refitted.layers, strict=True):
        if source.name not in ("head_dense", "logits") and source.weights:
            target.set_weights(source.get_weights())
    refitted.get_layer("head_dense").set_weights(dense)
    refitted.get_layer("logits").set_weights(logits)

    out_dir = Path(out_dir)
    new_card = candidate_card(
        card,
        refitted,
        out_dir,
        external_rows,
        external_split,
        head_units=int(dense[0].shape[1]),
        recipe={"method": "head re-fit on frozen backbone features (training/head_refit.py)", **asdict(config)},
        command=command,
        hardware="CPU (the backbone frozen: features cached once, heads fitted on them)",
        train_wall_minutes=round((time.monotonic() - started) / 60, 2),
    )
    write_card(out_dir, new_card)
    # The validation split it is measured on is the start model's (calibrate and promote read it).
    shutil.copyfile(Path(start_dir) / "split.json", out_dir / "split.json")
    return new_card


def add_parser(commands: argparse._SubParsersAction) -> None:
    defaults = HeadRefitConfig()
    parser = commands.add_parser(
        "head-refit",
        help="re-fit the head on frozen features: the training split (distilled) plus the external train part",
    )
    parser.add_argument(
        "--model",
        type=Path,
        required=True,
        help="start model folder (v3 was re-fitted from v1, brain-xception-20261127-0528: "
        "git show b9f4edd:models/brain-xception/...); starting from a re-fitted model widens the head again",
    )
    parser.add_argument("--out", type=Path, required=True, help="the candidate model folder to write")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--external", type=Path, default=EXTERNAL_DATA)
    parser.add_argument(
        "--external-split",
        type=Path,
        default=EXTERNAL_SPLIT_FILE,
        help="the external set's patient-group split; its train part is used (e.g. one without the "
        "non-commercial deepmedic groups)",
    )
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    config = HeadRefitConfig(**{name: getattr(args, name) for name in asdict(HeadRefitConfig())})
    card = head_refit(
        args.model,
        args.out,
        config,
        data=args.data,
        external=args.external,
        external_split=args.external_split,
        command="python -m training " + shlex.join(sys.argv[1:]),
    )
    print(f"{card['version']}: {card['architecture']} → {args.out} ({card['train_wall_minutes']} min)")
    return 0
