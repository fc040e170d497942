"""Which layers should LayerCAM read? Pointing and energy-in-box of several layer sets, on the
boxed scans of one side of the model's split (docs/heatmaps.md, "One layer, block13").

A set is chosen on the training side (`--part train`, ~1,265 boxed scans) and then checked,
not tuned, on the validation side (`--part val`, the 313 scans that `explain-eval` scores).
Every set comes from one forward/backward per scan (the union of the
layers), through the serving path; what a set costs is `bench/analyze_speed.py --methods`.

usage: python scripts/cam_layers.py --part train|val [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mri.card import DEFAULT_MODEL_DIR
from mri.model.cams import CamSpec
from training.commands import DEFAULT_BOXES
from training.data import DEFAULT_DATA, load_split, samples_from_keys
from training.explain_eval import explain_eval

# 14×14 layers (block5-13 and block13's first half) cost a backward pass only down to them;
# block4 (28×28) costs one through the whole middle flow.
LAYER_SETS: dict[str, tuple[str, ...]] = {
    "4, 13, 14 (v3's first map)": ("block4", "block13", "block14"),
    "13, 14": ("block13", "block14"),
    "12, 13, 14": ("block12", "block13", "block14"),
    "13 (first half), 13, 14": ("block13_sepconv1_act", "block13", "block14"),
    "10, 13, 14": ("block10_sepconv3_act", "block13", "block14"),
    "8, 13, 14": ("block8_sepconv3_act", "block13", "block14"),
    "6, 13, 14": ("block6_sepconv3_act", "block13", "block14"),
    "11, 12, 13, 14": ("block11_sepconv3_act", "block12", "block13", "block14"),
    "12 (first half), 12, 13, 14": ("block12_sepconv1_act", "block12", "block13", "block14"),
    "12, 13": ("block12", "block13"),
    "13 (first half), 13": ("block13_sepconv1_act", "block13"),
    "13 alone": ("block13",),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("train", "val"), required=True)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--out", type=Path, default=Path("runs/cam-layers"))
    args = parser.parse_args()

    samples = samples_from_keys(DEFAULT_DATA, load_split(args.model / "split.json")[args.part])
    methods = {name: CamSpec("layercam", layers) for name, layers in LAYER_SETS.items()}
    report = explain_eval(
        args.model,
        samples,
        DEFAULT_BOXES,
        args.out / args.part,
        methods,
        reference_every=0,
    )
    print(f"{report['scans']} boxed scans, {args.part} side of {report['model_version']}'s split")
    print(f"{'LayerCAM layers':>30}  pointing  energy  " + "  ".join(("glioma", "mening.", "pituit.")))
    for name, row in report["methods"].items():
        per_class = "  ".join(f"{v['pointing']:7.3f}" for v in row["all"]["per_class"].values())
        print(f"{name:>30}  {row['all']['pointing']:8.3f}  {row['all']['energy_in_box']:6.3f}  {per_class}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
