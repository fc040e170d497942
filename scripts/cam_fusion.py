"""How the three LayerCAM layers of v3's first heatmap are fused, measured on glioma boxes (issue 16).

The map v3 first shipped averages LayerCAM over block4, block13 and block14 (served since
2026-12-07: block13 alone, scripts/cam_layers.py), each scaled to [0, 1]. This
script takes the same per-layer maps from the served pass (`Analyzer.probe`) for the boxed
glioma slices of four sets, fuses them several ways at the model's input size, maps each back
to the scan (`map_to_scan`) and scores pointing and energy in the box with
training/localization.py, per set and per MRI sequence:

- merge-train / merge-val: the training merge's boxed gliomas (`tumor-boxes.csv`) on each side
  of the shipped model's split (the choice would be made on merge-train, never on val);
- ext-train / ext-val: the external set's glioma slices (boxes of the whole-tumour mask) on
  each side of its patient split.

    .venv/bin/python scripts/cam_fusion.py [--sets merge-train ext-train merge-val ext-val]

Results (model v3, 2026-12-07) are in docs/heatmaps.md, "Fusing the layers otherwise".
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mri.card import DEFAULT_MODEL_DIR
from mri.intake.decode import decode_gray
from mri.model.cams import layer_map, normalize
from mri.model.preprocessing import map_to_scan, prepare
from mri.vocabulary import CLASS_NAMES
from training.data import DEFAULT_DATA, samples_from_keys
from training.localization import Box, energy_in_box, pointing_hit, read_boxes

EPS = 1e-6
# Each takes the [0, 1] maps of block4, block13 and block14 at the input size.
FUSIONS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "mean of 4, 13, 14 (shipped)": lambda m4, m13, m14: (m4 + m13 + m14) / 3,
    "mean of 13, 14": lambda m4, m13, m14: (m13 + m14) / 2,
    "block13 alone": lambda m4, m13, m14: m13,
    "block14 alone": lambda m4, m13, m14: m14,
    "weights 1, 2, 1": lambda m4, m13, m14: (m4 + 2 * m13 + m14) / 4,
    "geometric mean of 4, 13, 14": lambda m4, m13, m14: np.cbrt((m4 + EPS) * (m13 + EPS) * (m14 + EPS)),
    "block4 x mean of 13, 14": lambda m4, m13, m14: m4 * (m13 + m14) / 2,
    "shipped x block14": lambda m4, m13, m14: (m4 + m13 + m14) / 3 * m14,
}
LAYERS = ("block4_sepconv2_act", "block13_sepconv2_act", "block14_sepconv2_act")


def boxed_gliomas(name: str) -> tuple[list, dict, dict[str, str]]:
    """(samples, boxes, sequence per key) of one set's boxed glioma slices."""
    if name.startswith("merge"):
        import json

        split = json.loads((DEFAULT_MODEL_DIR / "split.json").read_text())
        boxes = read_boxes(DEFAULT_DATA.parent / "tumor-boxes.csv")
        side = split["val"] if name == "merge-val" else split["train"]
        samples = samples_from_keys(DEFAULT_DATA, side)
        return [s for s in samples if s.key in boxes and boxes[s.key].label == "glioma"], boxes, {}
    from training.external import EXTERNAL_DATA, SEQUENCE_NAMES, load_external_split, read_manifest

    rows = read_manifest(EXTERNAL_DATA)
    boxes = read_boxes(EXTERNAL_DATA / "boxes.csv")
    samples = samples_from_keys(EXTERNAL_DATA, load_external_split()[name.split("-")[1]])
    return [s for s in samples if s.key in boxes], boxes, {r.key: SEQUENCE_NAMES[r.sequence] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["merge-train", "ext-train", "merge-val", "ext-val"])
    args = parser.parse_args()

    from mri.model.analyzer import Analyzer

    analyzer = Analyzer(cam="layercam")
    order = [analyzer.layer_names.index(name) for name in LAYERS]
    glioma = CLASS_NAMES.index("glioma")
    for set_name in args.sets:
        samples, boxes, sequences = boxed_gliomas(set_name)
        scores: dict[str, dict[str, list[tuple[bool, float]]]] = defaultdict(lambda: defaultdict(list))
        for sample in samples:
            gray = decode_gray(Path(sample.path).read_bytes())
            prepared = prepare(gray, analyzer.input_size, analyzer.head_crop)
            _logits, features, gradients = analyzer.probe(prepared, glioma, False)
            size = (analyzer.input_size, analyzer.input_size)
            maps = [
                cv2.resize(normalize(layer_map("layercam", features[i][0], gradients[i][0])), size)
                for i in order
            ]
            row = boxes[sample.key]
            box = Box.from_yolo(row.xc, row.yc, row.w, row.h, gray.shape[1], gray.shape[0])
            for fusion, fuse in FUSIONS.items():
                heatmap = map_to_scan(normalize(fuse(*maps)), prepared)
                hit = pointing_hit(heatmap, box), energy_in_box(heatmap, box)
                scores[fusion][sequences.get(sample.key, "T1 post-contrast")].append(hit)
        print(f"\n{set_name}: {len(samples)} boxed glioma slices, model {analyzer.model_version}")
        print("| fusion | pointing | energy in box | pointing per sequence |\n|---|---:|---:|---|")
        for fusion, by_sequence in scores.items():
            rows = [x for values in by_sequence.values() for x in values]
            per = ", ".join(
                f"{seq} {np.mean([h for h, _ in v]):.3f} (n {len(v)})" for seq, v in sorted(by_sequence.items())
            )
            print(f"| {fusion} | {np.mean([h for h, _ in rows]):.3f} | {np.mean([e for _, e in rows]):.3f} | {per} |")


if __name__ == "__main__":
    main()
