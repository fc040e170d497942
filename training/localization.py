"""Where a heatmap points, against an expert's tumour box: the pointing game and the energy in
the box (pure NumPy, at the scan's own resolution)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The data README's tolerance: ~15 px at 512 px, applied at the scan's own resolution.
POINTING_TOLERANCE_PX = 15


@dataclass(frozen=True)
class Box:
    """A box in pixels: columns x0..x1, rows y0..y1 (ends exclusive, may be fractional)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def from_yolo(cls, xc: float, yc: float, w: float, h: float, width: int, height: int) -> Box:
        """From a centre/size box normalized to the image (YOLO style) to pixels."""
        return cls((xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height)


def peak(heatmap: np.ndarray) -> tuple[int, int]:
    """(row, column) of the heatmap's maximum (the first one on ties)."""
    row, column = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return int(row), int(column)


def pointing_hit(heatmap: np.ndarray, box: Box, tolerance: float = POINTING_TOLERANCE_PX) -> bool:
    """Is the heatmap's peak inside the box grown by `tolerance` pixels on every side?

    A map with no signal at all (all zeros) points nowhere: a miss."""
    if not np.any(heatmap > 0):
        return False
    row, column = peak(heatmap)
    # Pixel centres: a peak in pixel (r, c) sits at (r + 0.5, c + 0.5).
    x, y = column + 0.5, row + 0.5
    return box.x0 - tolerance <= x <= box.x1 + tolerance and box.y0 - tolerance <= y <= box.y1 + tolerance


def energy_in_box(heatmap: np.ndarray, box: Box) -> float:
    """Share of the heatmap's mass inside the box (0 for an empty map)."""
    values = np.clip(np.asarray(heatmap, dtype=np.float64), 0.0, None)
    total = float(values.sum())
    if total <= 0:
        return 0.0
    height, width = values.shape
    y0, y1 = max(0, int(np.floor(box.y0))), min(height, int(np.ceil(box.y1)))
    x0, x1 = max(0, int(np.floor(box.x0))), min(width, int(np.ceil(box.x1)))
    return float(values[y0:y1, x0:x1].sum()) / total if y1 > y0 and x1 > x0 else 0.0


@dataclass(frozen=True)
class BoxRow:
    key: str  # "<class>/<file>", as training.data.Sample.key
    label: str
    xc: float
    yc: float
    w: float
    h: float


def read_boxes(path: Path) -> dict[str, BoxRow]:
    """tumor-boxes.csv (`file,label,xc,yc,w,h`) by scan key."""
    with open(path, newline="") as handle:
        rows = [
            BoxRow(r["file"], r["label"], float(r["xc"]), float(r["yc"]), float(r["w"]), float(r["h"]))
            for r in csv.DictReader(handle)
        ]
    return {row.key: row for row in rows}
