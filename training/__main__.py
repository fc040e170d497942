"""`python -m training <command>`: split, pack, train, head-refit, top-finetune, calibrate, evaluate, robustness,
explain-eval, ood, promote."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mri.model.cams import CAM_METHODS
from mri.model.preprocessing import HEAD_CROPS
from training import commands as command_functions
from training.data import DEFAULT_DATA, SPLIT_FILE
from training.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    split = commands.add_parser("split", help="near-duplicate-aware stratified validation split")
    split.set_defaults(func=command_functions.run_split)
    split.add_argument("--data", type=Path, default=DEFAULT_DATA)
    split.add_argument("--out", type=Path, default=SPLIT_FILE)
    split.add_argument("--val-fraction", type=float, default=0.2)
    split.add_argument("--seed", type=int, default=1337)

    pack = commands.add_parser("pack", help="cache the preprocessed training scans as WebP shards")
    pack.set_defaults(func=command_functions.run_pack)
    pack.add_argument("--data", type=Path, default=DEFAULT_DATA)
    pack.add_argument("--split", type=Path, default=SPLIT_FILE)
    pack.add_argument("--out", type=Path, required=True)
    pack.add_argument("--stored-size", type=int, default=256)
    pack.add_argument("--head-crop", choices=HEAD_CROPS, default=TrainConfig.head_crop)
    pack.add_argument("--quality", type=int, default=85, help="WebP quality of the stored scans")
    pack.add_argument("--only", choices=("train", "val"), default=None, help="pack one side of the split only")

    train = commands.add_parser("train", help="transfer learning: frozen head phase, then fine-tuning")
    train.set_defaults(func=command_functions.run_train)
    train.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder per class (used to build the pack)")
    train.add_argument("--split", type=Path, default=SPLIT_FILE)
    train.add_argument("--pack", type=Path, nargs="*", help="pack folders (default: built and cached under var/cache)")
    train.add_argument("--run-dir", type=Path, default=REPO / "runs" / "train")
    train.add_argument(
        "--backbone-weights",
        default=str(REPO / ".weights" / "xception_imagenet_notop.weights.h5"),
        help="'imagenet' (download), a .weights.h5 path, or 'none'",
    )
    # Defaults come from TrainConfig, the one home of the recipe (so --help and the card agree).
    recipe = TrainConfig()
    train.add_argument("--input-size", type=int, default=recipe.input_size)
    train.add_argument("--batch-size", type=int, default=recipe.batch_size)
    train.add_argument("--head-epochs", type=int, default=recipe.head_epochs)
    train.add_argument("--finetune-epochs", type=int, default=recipe.finetune_epochs)
    train.add_argument(
        "--first-block", type=int, default=recipe.first_block, help="fine-tune Xception blocks from this one on"
    )
    train.add_argument("--head-lr", type=float, default=recipe.head_lr)
    train.add_argument("--finetune-lr", type=float, default=recipe.finetune_lr)
    train.add_argument("--weight-decay", type=float, default=recipe.weight_decay)
    train.add_argument("--dropout", type=float, default=recipe.dropout)
    train.add_argument("--seed", type=int, default=recipe.seed)
    train.add_argument("--workers", type=int, default=recipe.workers)
    train.add_argument("--mixed-precision", action="store_true", help="bfloat16 compute (GPU)")
    train.add_argument("--deadline-minutes", type=float, default=recipe.deadline_minutes)
    train.add_argument("--resume", action="store_true")
    train.add_argument(
        "--verbose", type=int, default=recipe.verbose, help="Keras fit verbosity: 1 progress bar, 2 a line per epoch"
    )
    train.add_argument(
        "--head-crop", choices=HEAD_CROPS, default=recipe.head_crop, help="serving head crop (stored in the card)"
    )
    train.add_argument(
        "--init-model", default=recipe.init_model, help="start from this model folder's weights (e.g. the shipped one)"
    )
    train.add_argument("--smoke", action="store_true", help="a few scans, 96 px, one epoch per phase")
    train.add_argument("--version", default="brain-xception")

    calibrate = commands.add_parser("calibrate", help="fit temperature scaling on the validation split")
    calibrate.set_defaults(func=command_functions.run_calibrate)
    calibrate.add_argument("--model", type=Path, required=True)
    calibrate.add_argument("--data", type=Path, default=DEFAULT_DATA)

    evaluate = commands.add_parser("evaluate", help="metrics, predictions and plots for a folder-per-class set")
    evaluate.set_defaults(func=command_functions.run_evaluate)
    evaluate.add_argument("--data", type=Path, required=True)
    evaluate.add_argument("--out", type=Path, required=True)
    evaluate.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    evaluate.add_argument(
        "--part",
        choices=("train", "val"),
        default=None,
        help="with a data folder holding manifest.csv (the external set): one side of its patient-group split",
    )
    evaluate.add_argument(
        "--split", type=Path, default=None, help="the external split file (default: the committed one)"
    )
    evaluate.add_argument(
        "--record-card",
        action="store_true",
        help="with --part val on the external set: write the validated sequences and their figures into the card",
    )

    robustness = commands.add_parser("robustness", help="validation accuracy under export perturbations")
    robustness.set_defaults(func=command_functions.run_robustness)
    robustness.add_argument("--model", type=Path, default=None)
    robustness.add_argument("--data", type=Path, default=DEFAULT_DATA)
    robustness.add_argument("--out", type=Path, required=True)
    robustness.add_argument(
        "--limit", type=int, default=0, help="score N validation scans, the same number from each class"
    )

    explain = commands.add_parser(
        "explain-eval", help="pointing game and energy-in-box of heatmap methods on boxed validation scans"
    )
    explain.set_defaults(func=command_functions.run_explain_eval)
    explain.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    explain.add_argument("--data", type=Path, default=DEFAULT_DATA)
    explain.add_argument("--boxes", type=Path, default=DEFAULT_DATA.parent / "tumor-boxes.csv")
    explain.add_argument("--out", type=Path, required=True)
    explain.add_argument(
        "--part",
        choices=("train", "val"),
        default=None,
        help="with the external set (--data holding manifest.csv; its boxes.csv by default): one side of its split",
    )
    explain.add_argument(
        "--method", nargs="*", choices=sorted(CAM_METHODS), default=None, help="methods to score (default: all)"
    )
    explain.add_argument("--layers", nargs="*", default=None, help="layers for --method (block4, block13, block14, …)")
    explain.add_argument(
        "--limit",
        type=int,
        default=0,
        help="score about N boxed scans, a third per tumour class, evenly spread (0: all)",
    )
    explain.add_argument("--reference-every", type=int, default=10, help="Score-CAM on every k-th scan (0: none)")
    explain.add_argument("--reference-channels", type=int, default=256)
    explain.add_argument(
        "--ship",
        default=None,
        metavar="METHOD",
        help="write METHOD (one of those scored) and its figures into the model card: the workers then use it",
    )

    promote = commands.add_parser(
        "promote",
        help="ship a candidate only if non-inferior on the original validation split and better on the external "
        "validation part; keeps the card history",
    )
    promote.set_defaults(func=command_functions.run_promote)
    promote.add_argument("--candidate", type=Path, required=True, help="a trained, calibrated model folder")
    promote.add_argument("--into", type=Path, default=REPO / "models" / "brain-xception", help="the shipped model")
    promote.add_argument("--dry-run", action="store_true", help="compare and record the decision only")

    # Every subcommand (and each `ood` verb) names its function: main() calls args.func(args).
    from training.head_refit import add_parser as add_head_refit_parser
    from training.ood import add_parser as add_ood_parser
    from training.sequence_probe import add_parser as add_sequence_probe_parser
    from training.top_finetune import add_parser as add_top_finetune_parser

    add_head_refit_parser(commands)
    add_top_finetune_parser(commands)
    add_ood_parser(commands)
    add_sequence_probe_parser(commands)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
