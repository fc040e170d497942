"""The training set on disk: listing, near-duplicate groups, and the validation split.

Near-duplicates (adjacent slices of one patient, re-encoded copies) must stay on one side of
the split, or validation flatters the model. Scans are grouped by perceptual hash: two scans
whose 64-bit pHashes differ in at most `NEAR_DUPLICATE_BITS` bits are linked, and linked scans
form one group (connected components). Groups are then split stratified by class.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mri.vocabulary import CLASS_NAMES

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
NEAR_DUPLICATE_BITS = 6
# The training set lives beside the checkout (../shared, read-only); BRAIN_MRI_DIR overrides.
DEFAULT_DATA = Path(
    os.environ.get("BRAIN_MRI_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "brain-mri" / "Training"
)
SPLIT_FILE = Path(__file__).resolve().parent / "splits" / "brain-mri-v1.json"


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int

    @property
    def key(self) -> str:
        """Stable name relative to the data root: `<class>/<file>`."""
        return f"{self.path.parent.name}/{self.path.name}"


# Folder names other exports of this data set use for the same classes.
CLASS_FOLDER_ALIASES = {
    "glioma": ("glioma", "glioma_tumor", "glioma_tumour"),
    "meningioma": ("meningioma", "meningioma_tumor", "meningioma_tumour"),
    "notumor": ("notumor", "no_tumor", "no_tumour", "notumour", "normal", "no"),
    "pituitary": ("pituitary", "pituitary_tumor", "pituitary_tumour"),
}


def class_folder(root: Path, name: str) -> Path | None:
    """The folder under `root` holding class `name` (case-insensitive, common aliases)."""
    folders = {p.name.lower(): p for p in Path(root).iterdir() if p.is_dir()}
    return next((folders[a] for a in CLASS_FOLDER_ALIASES[name] if a in folders), None)


def list_samples(root: Path) -> list[Sample]:
    """Every image under `root/<class>/`, classes in CLASS_NAMES order, files sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    folders = {name: class_folder(root, name) for name in CLASS_NAMES}
    missing = [name for name, folder in folders.items() if folder is None]
    if len(missing) == len(CLASS_NAMES):
        raise FileNotFoundError(f"{root} has no class folders (expected {', '.join(CLASS_NAMES)})")
    if missing:
        print(f"warning: {root} has no folder for {', '.join(missing)}; scoring the other classes", file=sys.stderr)
    samples = []
    for label, name in enumerate(CLASS_NAMES):
        if folders[name] is not None:
            files = sorted(p for p in folders[name].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            samples.extend(Sample(p, label) for p in files)
    return samples


def perceptual_hashes(paths: Iterable[Path]) -> np.ndarray:
    """64-bit DCT pHash of each image, as a (N, 64) bool array."""
    import imagehash
    from PIL import Image

    rows = []
    for path in paths:
        with Image.open(path) as image:
            rows.append(imagehash.phash(image.convert("L"), hash_size=8).hash.reshape(-1))
    return np.asarray(rows, dtype=bool)


def near_duplicate_groups(hashes: np.ndarray, max_bits: int = NEAR_DUPLICATE_BITS) -> np.ndarray:
    """Group id per row: connected components of 'pHash distance <= max_bits'."""
    count = len(hashes)
    packed = np.packbits(hashes, axis=1).view(np.uint64).ravel()
    parent = np.arange(count)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    popcount = np.vectorize(int.bit_count, otypes=[np.int64])
    for i in range(count - 1):
        distances = popcount(packed[i] ^ packed[i + 1 :])
        for j in np.flatnonzero(distances <= max_bits) + i + 1:
            root_i, root_j = find(i), find(int(j))
            if root_i != root_j:
                parent[root_j] = root_i
    return np.array([find(i) for i in range(count)])


def cross_pairs(
    hashes_a: np.ndarray, hashes_b: np.ndarray, max_bits: int = NEAR_DUPLICATE_BITS
) -> list[tuple[int, int]]:
    """Pairs (i, j) with scan i of A and scan j of B at most `max_bits` apart."""
    a = hashes_a.astype(np.int32)
    b = hashes_b.astype(np.int32)
    # Hamming distance of bit vectors through matrix products: d = |a| + |b| - 2 a·b.
    distances = a.sum(1)[:, None] + b.sum(1)[None, :] - 2 * (a @ b.T)
    return [tuple(map(int, pair)) for pair in np.argwhere(distances <= max_bits)]


def split_groups(labels: Sequence[int], groups: Sequence[int], val_fraction: float, seed: int) -> np.ndarray:
    """Boolean 'is validation' per sample; whole groups move, each class near `val_fraction`.

    A group is assigned by its majority class; groups are shuffled and taken into validation
    while that class is below its quota.
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), dtype=bool)
    unique_groups = rng.permutation(np.unique(groups))
    quota = {c: val_fraction * np.sum(labels == c) for c in np.unique(labels)}
    taken = dict.fromkeys(quota, 0)
    for group in unique_groups:
        members = np.flatnonzero(groups == group)
        majority = int(np.bincount(labels[members]).argmax())
        if taken[majority] + len(members) <= quota[majority] * 1.02:
            is_val[members] = True
            taken[majority] += len(members)
    return is_val


def make_split(root: Path, val_fraction: float = 0.2, seed: int = 1337) -> dict:
    """Compute the split of `root` and describe it as a JSON-able dict."""
    from tqdm import tqdm

    samples = list_samples(root)
    hashes = perceptual_hashes(tqdm(s.path for s in samples) if len(samples) > 500 else (s.path for s in samples))
    groups = near_duplicate_groups(hashes)
    is_val = split_groups([s.label for s in samples], groups, val_fraction, seed)
    return {
        "seed": seed,
        "val_fraction": val_fraction,
        "near_duplicate_bits": NEAR_DUPLICATE_BITS,
        "groups": len(np.unique(groups)),
        "largest_group": int(np.bincount(np.unique(groups, return_inverse=True)[1]).max()),
        "train": [s.key for s, v in zip(samples, is_val, strict=True) if not v],
        "val": [s.key for s, v in zip(samples, is_val, strict=True) if v],
        "phash": {s.key: np.packbits(h).tobytes().hex() for s, h in zip(samples, hashes, strict=True)},
    }


def load_split(path: Path = SPLIT_FILE) -> dict:
    return json.loads(Path(path).read_text())


def samples_from_keys(root: Path, keys: Iterable[str]) -> list[Sample]:
    return [Sample(Path(root) / key, CLASS_NAMES.index(key.split("/")[0])) for key in keys]


def hashes_from_hex(values: Iterable[str]) -> np.ndarray:
    return np.asarray([np.unpackbits(np.frombuffer(bytes.fromhex(v), dtype=np.uint8)) for v in values], dtype=bool)
