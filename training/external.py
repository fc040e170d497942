"""The external brain MRI set (../shared/datasets/brain-mri-external): its manifest, its
patient-level split, and per-sequence figures.

The set's slices come from about a dozen patients, several slices each: a split by slice would
put one patient's neighbouring slices on both sides and flatter any model. It is split by the
manifest's `patient_group` (some sources hold the same patients under two names; the group
unites them). With twelve groups every train/validation assignment can be tried: the chosen one
puts every (label, sequence) cell on both sides when the cell has two groups or more, and keeps
each cell's validation share closest to the target fraction (squared error, summed over cells).
The validation part is for measuring only: a model may train on the train part.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mri.card import ModelCard
from mri.vocabulary import CLASS_NAMES, NO_TUMOUR
from training.data import DEFAULT_DATA
from training.metrics import expected_calibration_error

# Beside the training set (training.data.DEFAULT_DATA, which BRAIN_MRI_DIR moves); its own override.
EXTERNAL_DATA = Path(os.environ.get("BRAIN_MRI_EXTERNAL_DIR") or DEFAULT_DATA.parent.parent / "brain-mri-external")
EXTERNAL_SPLIT_FILE = Path(__file__).resolve().parent / "splits" / "brain-mri-external-v1.json"
MANIFEST = "manifest.csv"
# The manifest's sequence names → the names the product shows (apps: the sequence vocabulary).
SEQUENCE_NAMES = {"flair": "FLAIR", "t2": "T2", "t1": "T1", "t1c": "T1 post-contrast"}
TUMOUR = frozenset(i for i, name in enumerate(CLASS_NAMES) if name != NO_TUMOUR)
NOTUMOR = CLASS_NAMES.index(NO_TUMOUR)
MAX_EXHAUSTIVE_GROUPS = 16  # 2**16 assignments: still instant


@dataclass(frozen=True)
class ExternalSlice:
    key: str  # "<label>/<file>", as training.data.Sample.key
    label: str
    sequence: str  # manifest name: flair, t2, t1, t1c
    patient_group: str
    source: str
    z_rel: float
    skull_stripped: bool

    @property
    def cell(self) -> tuple[str, str]:
        return self.label, self.sequence


def read_manifest(root: Path = EXTERNAL_DATA) -> list[ExternalSlice]:
    with open(Path(root) / MANIFEST, newline="") as handle:
        return [
            ExternalSlice(
                key=row["file"],
                label=row["label"],
                sequence=row["sequence"],
                patient_group=row["patient_group"],
                source=row["source"],
                z_rel=float(row["z_rel_in_brain"] or "nan"),  # unknown for single 2-D slices
                skull_stripped=row["skull_stripped"].strip().lower() == "true",
            )
            for row in csv.DictReader(handle)
        ]


def _cells(rows: Sequence[ExternalSlice]) -> dict[str, dict[tuple[str, str], int]]:
    """Per patient group, its slice count per (label, sequence) cell."""
    table: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        table[row.patient_group][row.cell] += 1
    return table


def split_by_patient_group(rows: Sequence[ExternalSlice], val_fraction: float = 0.35) -> dict[str, list[str]]:
    """The validation patient groups (see the module docstring); deterministic, no seed."""
    table = _cells(rows)
    groups = sorted(table)
    if len(groups) > MAX_EXHAUSTIVE_GROUPS:
        raise ValueError(f"{len(groups)} patient groups: too many to try every split")
    cells = sorted({cell for counts in table.values() for cell in counts})
    totals = {cell: sum(table[g].get(cell, 0) for g in groups) for cell in cells}
    holders = {cell: [g for g in groups if table[g].get(cell)] for cell in cells}
    best: tuple[float, tuple[str, ...]] | None = None
    for size in range(1, len(groups)):
        for chosen in itertools.combinations(groups, size):
            val = set(chosen)
            if any(len(h) >= 2 and (set(h) <= val or not set(h) & val) for h in holders.values()):
                continue  # a cell held by several groups must be on both sides
            error = sum((sum(table[g].get(cell, 0) for g in val) / totals[cell] - val_fraction) ** 2 for cell in cells)
            if best is None or error < best[0] - 1e-12:
                best = (error, chosen)
    if best is None:
        raise ValueError("no split puts every shared (label, sequence) cell on both sides")
    val_groups = set(best[1])
    return {
        "train_groups": [g for g in groups if g not in val_groups],
        "val_groups": sorted(val_groups),
        "train": sorted(r.key for r in rows if r.patient_group not in val_groups),
        "val": sorted(r.key for r in rows if r.patient_group in val_groups),
    }


def make_external_split(root: Path = EXTERNAL_DATA, val_fraction: float = 0.35) -> dict:
    rows = read_manifest(root)
    split = split_by_patient_group(rows, val_fraction)
    by_key = {r.key: r for r in rows}
    composition = {
        part: {
            f"{label}/{sequence}": n
            for (label, sequence), n in sorted(
                _count((by_key[k].label, by_key[k].sequence) for k in split[part]).items()
            )
        }
        for part in ("train", "val")
    }
    return {
        "data": "shared/datasets/brain-mri-external",
        "rule": (
            "by manifest patient_group, never by slice; of every assignment of the groups, the one whose "
            f"validation share of each (label, sequence) cell is closest to {val_fraction} (squared error), "
            "with every cell held by two groups or more on both sides"
        ),
        "val_fraction": val_fraction,
        "composition": composition,
        **split,
        "patient_group": {r.key: r.patient_group for r in rows},
    }


def _count(items: Iterable) -> dict:
    counts: dict = defaultdict(int)
    for item in items:
        counts[item] += 1
    return counts


def load_external_split(path: Path = EXTERNAL_SPLIT_FILE) -> dict:
    return json.loads(Path(path).read_text())


# --- figures per sequence --------------------------------------------------------------------


def breakdown(
    rows: Sequence[ExternalSlice],
    probabilities: np.ndarray,
    rejected: np.ndarray,
    by: str = "sequence",
) -> dict[str, dict]:
    """Per value of `by` (an ExternalSlice field, e.g. sequence or patient_group) and overall:
    tumour sensitivity (tumour slices called any tumour class), what they were called instead,
    tumour-free specificity, the OOD gate's rejections, and ECE of the top-1 class.

    `rejected`: the gate's verdict per slice. Sensitivity and specificity count a rejected slice
    as a failure (no tumour label was given); `*_among_accepted` leaves rejected slices out."""
    true = np.asarray([CLASS_NAMES.index(r.label) for r in rows])
    predicted = probabilities.argmax(axis=1)
    rejected = np.asarray(rejected, dtype=bool)
    keys = [getattr(r, by) for r in rows]
    report = {}
    for value in [*sorted(set(keys)), "all"]:
        members = np.asarray([value == "all" or k == value for k in keys])
        report[SEQUENCE_NAMES.get(value, value) if by == "sequence" else str(value)] = _figures(
            true[members], predicted[members], probabilities[members], rejected[members]
        )
    return report


def _figures(true: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, rejected: np.ndarray) -> dict:
    tumour = np.isin(true, list(TUMOUR))
    called_tumour = np.isin(predicted, list(TUMOUR))
    figures: dict = {"n": len(true), "rejected": int(rejected.sum())}
    figures["rejected_rate"] = _rate(rejected.sum(), len(true))
    if tumour.any():
        hits = tumour & called_tumour & ~rejected
        accepted = tumour & ~rejected
        figures["tumour"] = {
            "n": int(tumour.sum()),
            "sensitivity": _rate(hits.sum(), tumour.sum()),
            "sensitivity_among_accepted": _rate(hits.sum(), accepted.sum()),
            "called_notumor": int((tumour & (predicted == NOTUMOR) & ~rejected).sum()),
            "rejected": int((tumour & rejected).sum()),
            "called": {name: int((tumour & (predicted == i) & ~rejected).sum()) for i, name in enumerate(CLASS_NAMES)},
            "confident_notumor_099": int((tumour & (predicted == NOTUMOR) & (probabilities.max(1) >= 0.99)).sum()),
        }
    if (~tumour).any():
        free = ~tumour
        hits = free & (predicted == NOTUMOR) & ~rejected
        figures["notumor"] = {
            "n": int(free.sum()),
            "specificity": _rate(hits.sum(), free.sum()),
            "called_tumour": int((free & called_tumour & ~rejected).sum()),
            "rejected": int((free & rejected).sum()),
        }
    figures["accuracy"] = _rate(((predicted == true) & ~rejected).sum(), len(true))
    figures["ece_15"] = round(expected_calibration_error(probabilities, true, 15), 4) if len(true) else None
    return figures


def _rate(numerator: float, denominator: float) -> float | None:
    return round(float(numerator) / float(denominator), 4) if denominator else None


def rows_for_keys(root: Path, keys: Iterable[str]) -> list[ExternalSlice]:
    by_key = {r.key: r for r in read_manifest(root)}
    return [by_key[k] for k in keys]


# --- the model card's sequence section --------------------------------------------------------

# A sequence is validated when tumour slices on it are called a tumour at least this often, and
# the gate rejects at most this share of its real MRI slices, on data the model never trained on.
SENSITIVITY_BAR = 0.95
REJECTION_BAR = 0.02
# The training merge's tumour slices are figshare's (Cheng et al.): T1 post-contrast (data README).
OFFICIAL_SPLIT_SEQUENCE = "t1c"
TRAINING_MERGE_SOURCES = ["figshare (Cheng et al.)", "SARTAJ", "Br35H"]
# The external set's sources and their terms (its README), for the card: a model says what it
# was trained on, so a build without the non-commercial ones is possible (another split file).
SOURCE_TERMS = {
    "deepmedic": "deepmedic / BRATS 2013-2015 (CC BY-NC-SA 3.0 CH: non-commercial)",
    "brainlesiontut": "BrainLesion tutorials / TCIA TCGA-LGG (CC BY)",
    "ntustison": "ntustison BRATS 2013 2-D slices (BRATS 2013 challenge terms)",
    "pyradiomics": "pyradiomics test heads (BSD-3)",
}


def sequence_section(card: dict, external_val: dict, command: str) -> dict:
    """The card's `sequences` section: which sequences the model is validated on, with figures
    for each, from the original validation split and the external set's validation part."""
    official = ModelCard.of(card).validation
    per_class = official.get("per_class") or {}
    tumour_recall = {
        c: round(per_class[c]["recall"], 4) for c in ("glioma", "meningioma", "pituitary") if c in per_class
    }
    figures: dict[str, dict] = {}
    validated = []
    if tumour_recall and min(tumour_recall.values()) >= SENSITIVITY_BAR:
        validated.append(OFFICIAL_SPLIT_SEQUENCE)
    figures[SEQUENCE_NAMES[OFFICIAL_SPLIT_SEQUENCE]] = {
        "original_validation_split": {
            "n": official.get("n"),
            "tumour_recall": tumour_recall,
            "accuracy": (official.get("calibrated") or {}).get("accuracy"),
            "ece_15": (official.get("calibrated") or {}).get("ece_15"),
        }
    }
    for manifest_name, display in SEQUENCE_NAMES.items():
        row = external_val["per_sequence"].get(display)
        if not row:
            continue
        figures.setdefault(display, {})["external_validation_part"] = row
        tumour = row.get("tumour")
        passes = tumour and tumour["sensitivity"] >= SENSITIVITY_BAR and row["rejected_rate"] <= REJECTION_BAR
        if manifest_name != OFFICIAL_SPLIT_SEQUENCE and passes:
            validated.append(manifest_name)
    return {
        "validated": validated,
        "validated_names": [SEQUENCE_NAMES[s] for s in validated],
        "rule": (
            f"validated: tumour slices of the sequence called a tumour ≥ {SENSITIVITY_BAR:.0%} with ≤ "
            f"{REJECTION_BAR:.0%} of its slices rejected by the gate, on data the model did not train on "
            "(T1 post-contrast: every tumour class's recall on the original validation split, whose tumour "
            "slices are figshare's T1 post-contrast; other sequences: the external validation part)"
        ),
        "figures": figures,
        "external_validation_groups": external_val.get("patient_groups"),
        "not_measured": (
            "meningioma and pituitary on any sequence but T1 post-contrast (the external set has none); "
            "glioma in T1 post-contrast from outside the training merge; tumour-free T1/T2/FLAIR with a skull"
        ),
        "trained_on_sources": ModelCard.of(card).sources.get("trained_on_sources") or TRAINING_MERGE_SOURCES,
        "command": command,
    }
