"""`explain-eval`: where each heatmap method points, on validation scans with expert tumour boxes.

Every scan goes through the serving path (decode, `mri.model.preprocessing.prepare` with the model's
head crop, the runtime's traced pass, `map_to_scan`); all methods are computed from one
forward/backward per scan (`Analyzer.cam_maps`), for the scan's true class. Score-CAM, the
slow gradient-free reference, runs on a subset (every k-th scan) and every method is also
scored on that same subset, so the comparison is like for like.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from mri.intake.decode import decode_gray
from mri.model.cams import CamSpec, normalize
from mri.model.overlays import render_overlay
from mri.model.preprocessing import Prepared, map_to_scan, prepare, to_model_input
from mri.vocabulary import CLASS_NAMES
from training.localization import Box, energy_in_box, peak, pointing_hit, read_boxes

REFERENCE = "scorecam"
TUMOUR_CLASSES = ("glioma", "meningioma", "pituitary")


def score_cam(analyzer, prepared: Prepared, class_index: int, channels: int = 256, batch: int = 32) -> np.ndarray:
    """Score-CAM (Wang et al. 2020) on block14: each of the `channels` most active feature maps,
    upsampled and scaled to [0, 1], masks the input; the class logits of the masked inputs,
    softmax-normalized over channels, weight the maps. Gradient-free, and slow (one forward per
    channel), hence a reference only."""
    layer = analyzer.layer_names.index("block14_sepconv2_act")
    _logits, features, _gradients = analyzer.probe(prepared, class_index, False)
    activations = features[layer][0]
    chosen = np.argsort(activations.mean(axis=(0, 1)))[::-1][:channels]
    size = analyzer.input_size
    maps = cv2.resize(activations[..., chosen], (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, -1)
    low, high = maps.min(axis=(0, 1)), maps.max(axis=(0, 1))
    masks = (maps - low) / np.where(high > low, high - low, 1.0)
    pixels = to_model_input(prepared.pixels)
    scores = []
    for start in range(0, len(chosen), batch):
        masked = pixels[None] * masks[..., start : start + batch].transpose(2, 0, 1)[..., None]
        scores.append(analyzer.class_logits(masked.astype(np.float32))[:, class_index])
    weights = np.exp(np.concatenate(scores) - np.max(np.concatenate(scores)))
    weights /= weights.sum()
    return normalize(np.maximum((activations[..., chosen] * weights).sum(axis=-1), 0.0))


def _summary(records: list[dict], groups: dict[str, str] | None = None) -> dict:
    def block(rows: list[dict]) -> dict:
        return {
            "n": len(rows),
            "pointing": round(float(np.mean([r["hit"] for r in rows])), 4) if rows else None,
            "energy_in_box": round(float(np.mean([r["energy"] for r in rows])), 4) if rows else None,
        }

    summary = {
        **block(records),
        "per_class": {c: block([r for r in records if r["label"] == c]) for c in TUMOUR_CLASSES},
    }
    if groups:  # e.g. the sequence of each scan, where a manifest names it
        values = sorted({groups[r["key"]] for r in records if r["key"] in groups})
        summary["per_group"] = {v: block([r for r in records if groups.get(r["key"]) == v]) for v in values}
    return summary


def explain_eval(
    model_dir: Path,
    samples: list,
    boxes_file: Path,
    out_dir: Path,
    methods: dict[str, CamSpec],
    limit: int = 0,
    reference_every: int = 10,
    reference_channels: int = 256,
    progress: bool = True,
    groups: dict[str, str] | None = None,
) -> dict:
    """Score `methods` (and Score-CAM on every `reference_every`-th scan; 0: never) on the
    `samples` that have a box; write explain_eval.json and contact_sheet.png into `out_dir`.
    `groups` (scan key → a group name, e.g. its MRI sequence) adds figures per group."""
    from tqdm import tqdm

    from mri.model.analyzer import Analyzer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    boxes = read_boxes(boxes_file)
    boxed = [s for s in samples if s.key in boxes]
    if limit:
        # About `limit` scans, a third from each tumour class, evenly spread over the split.
        per_class = max(1, limit // len(TUMOUR_CLASSES))
        chosen = []
        for name in TUMOUR_CLASSES:
            rows = [s for s in boxed if boxes[s.key].label == name]
            chosen += rows[:: max(1, int(np.ceil(len(rows) / per_class)))][:per_class]
        boxed = chosen
    layers = tuple(dict.fromkeys(n for spec in methods.values() for n in spec.layer_names))
    analyzer = Analyzer(model_dir, cam="gradcam", probe_layers=(*layers, "block14_sepconv2_act"))
    records: dict[str, list[dict]] = {name: [] for name in [*methods, REFERENCE]}
    seconds = dict.fromkeys(["shared_pass", REFERENCE], 0.0)
    for position, sample in enumerate(tqdm(boxed, desc="explain-eval", unit="scan", disable=not progress)):
        row = boxes[sample.key]
        gray = decode_gray(Path(sample.path).read_bytes())
        prepared = prepare(gray, analyzer.input_size, analyzer.head_crop)
        box = Box.from_yolo(row.xc, row.yc, row.w, row.h, gray.shape[1], gray.shape[0])
        class_index = CLASS_NAMES.index(row.label)
        started = time.perf_counter()
        maps = analyzer.cam_maps(prepared, class_index, methods)
        seconds["shared_pass"] += time.perf_counter() - started
        reference = position % reference_every == 0 if reference_every else False
        if reference:
            started = time.perf_counter()
            maps[REFERENCE] = score_cam(analyzer, prepared, class_index, reference_channels)
            seconds[REFERENCE] += time.perf_counter() - started
        for name, cam in maps.items():
            heatmap = map_to_scan(cam, prepared)
            records[name].append(
                {
                    "key": sample.key,
                    "label": row.label,
                    "hit": pointing_hit(heatmap, box),
                    "energy": round(energy_in_box(heatmap, box), 4),
                    "peak": peak(heatmap),
                    "reference_subset": reference,
                }
            )
    report = {
        "model_dir": str(model_dir),
        "model_version": analyzer.model_version,
        "head_crop": analyzer.head_crop,
        "boxes": str(boxes_file),
        "scans": len(boxed),
        "target_class": "the scan's true class (expert label)",
        "pointing_tolerance_px": 15,
        "reference": {
            "method": REFERENCE,
            "layer": "block14",
            "channels": reference_channels,
            "every": reference_every,
        },
        "methods": {
            name: {
                "spec": {"rule": spec.rule, "layers": list(spec.layers), "flip": spec.flip} if spec else None,
                "all": _summary(rows, groups),
                "reference_subset": _summary([r for r in rows if r["reference_subset"]]),
            }
            for name, rows in records.items()
            if rows
            for spec in [methods.get(name)]
        },
        "seconds_per_scan": {
            "all_methods_one_pass": round(seconds["shared_pass"] / max(1, len(boxed)), 3),
            REFERENCE: round(seconds[REFERENCE] / max(1, len(records[REFERENCE])), 3),
        },
        "scans_detail": records,
    }
    (out_dir / "explain_eval.json").write_text(json.dumps(report, indent=1) + "\n")
    best = max(
        methods, key=lambda n: (report["methods"][n]["all"]["pointing"], report["methods"][n]["all"]["energy_in_box"])
    )
    contact_sheet(
        analyzer,
        samples_by_key={s.key: s for s in boxed},
        boxes=boxes,
        rows=records[best],
        spec=methods[best],
        title=best,
        out_path=out_dir / "contact_sheet.png",
    )
    report["contact_sheet_method"] = best
    return report


def contact_sheet(
    analyzer,
    samples_by_key: dict,
    boxes: dict,
    rows: list[dict],
    spec: CamSpec,
    title: str,
    out_path: Path,
    per_row: int = 6,
    tile: int = 200,
) -> None:
    """Two rows: the `per_row` scans whose map puts the most energy in the box, then the fewest;
    each tile is the serving overlay with the expert box (green) and the map's peak (white)."""
    ranked = sorted(rows, key=lambda r: r["energy"], reverse=True)
    chosen = ranked[:per_row] + ranked[::-1][:per_row]
    tiles = []
    for record in chosen:
        sample, row = samples_by_key[record["key"]], boxes[record["key"]]
        gray = decode_gray(Path(sample.path).read_bytes())
        prepared = prepare(gray, analyzer.input_size, analyzer.head_crop)
        cam = analyzer.cam_maps(prepared, CLASS_NAMES.index(row.label), {title: spec})[title]
        heatmap = map_to_scan(cam, prepared)
        image = render_overlay(gray, heatmap)
        box = Box.from_yolo(row.xc, row.yc, row.w, row.h, gray.shape[1], gray.shape[0])
        scale = tile / max(gray.shape)
        image = np.ascontiguousarray(cv2.resize(image, (round(gray.shape[1] * scale), round(gray.shape[0] * scale))))
        cv2.rectangle(
            image,
            (int(box.x0 * scale), int(box.y0 * scale)),
            (int(box.x1 * scale), int(box.y1 * scale)),
            (0, 255, 0),
            1,
        )
        y, x = peak(heatmap)
        cv2.drawMarker(image, (int(x * scale), int(y * scale)), (255, 255, 255), cv2.MARKER_CROSS, 12, 2)
        canvas = np.zeros((tile + 30, tile, 3), dtype=np.uint8)
        canvas[: image.shape[0], : image.shape[1]] = image
        cv2.putText(
            canvas,
            f"{row.label[:4]} E={record['energy']:.2f} {'hit' if record['hit'] else 'miss'}",
            (4, tile + 20),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        tiles.append(canvas)
    while len(tiles) % per_row:
        tiles.append(np.zeros_like(tiles[0]))
    sheet = np.vstack([np.hstack(tiles[i : i + per_row]) for i in range(0, len(tiles), per_row)])
    header = np.zeros((28, sheet.shape[1], 3), dtype=np.uint8)
    cv2.putText(
        header,
        f"{title}: most (top) and least (bottom) heatmap energy inside the expert box",
        (6, 19),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    cv2.imwrite(str(out_path), np.vstack([header, sheet])[..., ::-1])
