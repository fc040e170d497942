"""A compact cache of the training scans after the serving preprocessing.

Decoding and cropping the original JPEGs is the same every epoch, so it is done once: each
scan goes through `mri.model.preprocessing.prepare` at `stored_size` and is kept as WebP bytes in a
few `.npz` shards (≈ 70 MB for all 5,712 scans at 256 px). Training augments from these.
The shards are also small enough to carry to a GPU machine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mri.intake.decode import decode_gray
from mri.model.preprocessing import prepare
from training.data import Sample

WEBP_QUALITY = 85


def encode_prepared(path: Path, stored_size: int, head_crop: str = "v1", quality: int = WEBP_QUALITY) -> bytes:
    pixels = prepare(decode_gray(Path(path).read_bytes()), stored_size, head_crop).pixels
    ok, buffer = cv2.imencode(".webp", (pixels * 255 + 0.5).astype(np.uint8), [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    return buffer.tobytes()


def _encode_job(args: tuple[str, int, str, int]) -> bytes:
    return encode_prepared(Path(args[0]), *args[1:])


def build_pack(
    samples: Sequence[Sample],
    split: Sequence[str],
    out_dir: Path,
    stored_size: int,
    shard_bytes: int = 15 * 2**20,
    workers: int = 2,
    head_crop: str = "v1",
    quality: int = WEBP_QUALITY,
) -> None:
    """Write shards `pack-000.npz`, … and `pack.json` (keys, labels, split per scan)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(str(s.path), stored_size, head_crop, quality) for s in samples]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        blobs = list(tqdm(pool.map(_encode_job, jobs, chunksize=16), total=len(jobs), desc="pack", unit="scan"))
    shards, current, size = [], [], 0
    for index, blob in enumerate(blobs):
        if current and size + len(blob) > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(index)
        size += len(blob)
    shards.append(current)
    for number, indices in enumerate(shards):
        lengths = np.array([len(blobs[i]) for i in indices], dtype=np.int64)
        data = np.frombuffer(b"".join(blobs[i] for i in indices), dtype=np.uint8)
        np.savez(out_dir / f"pack-{number:03d}.npz", index=np.array(indices), lengths=lengths, data=data)
    meta = {
        "stored_size": stored_size,
        "head_crop": head_crop,
        "webp_quality": quality,
        "keys": [s.key for s in samples],
        "labels": [s.label for s in samples],
        "split": list(split),
        "shards": len(shards),
    }
    (out_dir / "pack.json").write_text(json.dumps(meta))


@dataclass
class Pack:
    stored_size: int
    keys: list[str]
    labels: np.ndarray
    split: list[str]
    blobs: list[bytes]
    head_crop: str = "v1"  # the serving crop the scans were prepared with (mri.model.preprocessing.HEAD_CROPS)

    def image(self, index: int) -> np.ndarray:
        """Stored scan `index` as uint8 gray (stored_size × stored_size)."""
        return cv2.imdecode(np.frombuffer(self.blobs[index], dtype=np.uint8), cv2.IMREAD_GRAYSCALE)

    def indices(self, part: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.split) if s == part])


def load_pack(directories: Sequence[Path]) -> Pack:
    """Read a pack whose shards may be spread over several folders (one holds pack.json)."""
    directories = [Path(d) for d in directories]
    meta_file = next((d / "pack.json" for d in directories if (d / "pack.json").exists()), None)
    if meta_file is None:
        raise FileNotFoundError(f"no pack.json in {', '.join(map(str, directories))}")
    meta = json.loads(meta_file.read_text())
    blobs: list[bytes | None] = [None] * len(meta["keys"])
    for directory in directories:
        for shard in sorted(directory.glob("pack-*.npz")):
            with np.load(shard) as arrays:
                offsets = np.concatenate([[0], np.cumsum(arrays["lengths"])])
                data = arrays["data"].tobytes()
                for k, index in enumerate(arrays["index"]):
                    blobs[int(index)] = data[offsets[k] : offsets[k + 1]]
    missing = sum(b is None for b in blobs)
    if missing:
        raise FileNotFoundError(f"pack is incomplete: {missing} of {len(blobs)} scans have no shard")
    return Pack(
        meta["stored_size"],
        meta["keys"],
        np.array(meta["labels"]),
        meta["split"],
        blobs,  # type: ignore[arg-type]
        meta.get("head_crop", "v1"),
    )
