"""Which layers' statistics make the out-of-distribution gate keep real MRI from other sources
while it still refuses non-MRI images (issue #16, item 5).

Step 1 (`extract`): the spatial mean and standard deviation of several layers' maps, for the
training split, the validation split, the external set and the OOD corpus, cached under
var/gate-layers/<model version>/ (one .npz per set).
Step 2 (`score`): for each candidate feature set, a class-conditional Mahalanobis gate fitted
like `ood fit --external-part train` (the training split plus one cluster per (label, sequence)
cell of the external train part; threshold the 99.5 % quantile of the training split's
cross-fitted scores), and what it rejects. The choice is made on the development families and on
the external *train* part scored leave-one-patient-group-out; the held-out families and the
external validation part are only reported.

    python scripts/gate_layers.py extract
    python scripts/gate_layers.py score
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mri.card import DEFAULT_MODEL_DIR  # noqa: E402
from mri.model.ood import GateInput  # noqa: E402
from mri.vocabulary import CLASS_NAMES  # noqa: E402

# name → the maps read; each gives "<name>.mean" and "<name>.std" columns. The residual sums are
# named by the block that reads them: Keras numbers Add layers per process.
LAYERS = {
    "b1": GateInput("block1_conv2_act", "mean+std"),
    "b2": GateInput("block3_sepconv1_act", "mean+std", input_of=True),
    "b3": GateInput("block4_sepconv1_act", "mean+std", input_of=True),
    "b4": GateInput("block5_sepconv1_act", "mean+std", input_of=True),  # served: GATE_INPUTS["entry"]
    "b8": GateInput("block9_sepconv1_act", "mean+std", input_of=True),
    "b12": GateInput("block13_sepconv1_act", "mean+std", input_of=True),
    "b13": GateInput("block13_sepconv2_act", "mean+std"),
    "sep1": GateInput("block14_sepconv1_act", "mean+std"),
}
OUT = REPO / "var" / "gate-layers"


def extract_set(features, card, loaders: list, path: Path) -> None:
    """Each LAYERS entry's mean and std columns for these images, saved to `path` once."""
    from training.ood_features import extract

    if path.exists():
        return
    found = extract(features, loaders, card.input_size, desc=path.stem, head_crop=card.head_crop, names=list(LAYERS))
    columns = {}
    for name in LAYERS:
        half = found[name].shape[1] // 2  # mean+std pooling: the means, then the spreads
        columns[f"{name}.mean"], columns[f"{name}.std"] = found[name][:, :half], found[name][:, half:]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, decoded=found["decoded"], **columns)


def run_extract(args) -> None:
    from mri.model.store import load_classifier
    from training.data import DEFAULT_DATA, load_split, samples_from_keys
    from training.external import EXTERNAL_DATA, read_manifest
    from training.ood_corpus import build_corpus, upload_refusal
    from training.ood_features import feature_model

    model, card = load_classifier(args.model)
    features = feature_model(model, LAYERS)
    out = OUT / card.version
    split = load_split()
    meta: dict = {}
    for part in ("val", "train"):
        samples = samples_from_keys(DEFAULT_DATA, split[part])
        meta[part] = [s.label for s in samples]
        extract_set(features, card, [(lambda p=s.path: p.read_bytes()) for s in samples], out / f"{part}.npz")
    rows = read_manifest(EXTERNAL_DATA)
    meta["external"] = [
        {"key": r.key, "label": r.label, "sequence": r.sequence, "group": r.patient_group} for r in rows
    ]
    extract_set(features, card, [(lambda p=EXTERNAL_DATA / r.key: p.read_bytes()) for r in rows], out / "external.npz")
    corpus = build_corpus()
    meta["corpus"] = [
        {
            "family": i.family,
            "held_out": i.held_out,
            "refused": upload_refusal(i.data) is not None,
            "sha": hashlib.sha256(i.data).hexdigest()[:12],
        }
        for i in corpus
    ]
    extract_set(features, card, [(lambda i=i: i.data) for i in corpus], out / "corpus.npz")
    (out / "meta.json").write_text(json.dumps(meta))


# --- step 2: score ---------------------------------------------------------------------------


def _load(out: Path) -> tuple[dict, dict]:
    sets = {}
    for name in ("train", "val", "external", "corpus"):
        with np.load(out / f"{name}.npz") as stored:
            sets[name] = {k: stored[k] for k in stored.files}
    return sets, json.loads((out / "meta.json").read_text())


def _columns(found: dict, spec: tuple[str, ...]) -> np.ndarray:
    return np.concatenate([found[c] for c in spec], axis=1).astype(np.float64)


def _scorer(features: np.ndarray, labels: np.ndarray):
    from mri.model.ood import RANK, MahalanobisScorer

    return MahalanobisScorer.fit(features, labels, rank=RANK)


def gate_scores(sets: dict, meta: dict, spec: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Scores of every set under a gate on `spec`'s columns, fitted as `ood fit --external-part
    train` does (without its export views); the training split cross-fitted, the external train
    part leave-one-group-out."""
    from training.external import load_external_split
    from training.ood import cross_fitted_gate

    train = _columns(sets["train"], spec)
    train_labels = np.asarray(meta["train"])
    external = _columns(sets["external"], spec)
    parts = load_external_split()
    train_keys = set(parts["train"])
    rows = meta["external"]
    in_train = np.asarray([r["key"] in train_keys for r in rows])
    cells = sorted({(r["label"], r["sequence"]) for r, t in zip(rows, in_train, strict=True) if t})
    cell_labels = np.asarray(
        [
            len(CLASS_NAMES) + cells.index((r["label"], r["sequence"])) if t else -1
            for r, t in zip(rows, in_train, strict=True)
        ]
    )
    groups = np.asarray([r["group"] for r in rows])

    def fit(train_rows: np.ndarray, external_rows: np.ndarray):
        return _scorer(
            np.concatenate([train[train_rows], external[external_rows]]),
            np.concatenate([train_labels[train_rows], cell_labels[external_rows]]),
        )

    no_views = np.zeros((0, train.shape[1])), np.zeros(0, dtype=int)
    cross, _ = cross_fitted_gate(train, train_labels, *no_views, external[in_train], cell_labels[in_train])
    everything = np.ones(len(train), bool)
    full = fit(everything, in_train)
    logo = np.full(len(rows), np.nan)
    for group in sorted(set(groups[in_train])):
        held = in_train & (groups == group)
        logo[held] = fit(everything, in_train & ~held).scores(external[held])
    return {
        "train": cross,
        "val": full.scores(_columns(sets["val"], spec)),
        "external": np.where(in_train, logo, full.scores(external)),
        "corpus": full.scores(np.nan_to_num(_columns(sets["corpus"], spec))),
        "in_train": in_train,
    }


def figures(scores: dict, meta: dict, threshold: float) -> dict:
    corpus = meta["corpus"]
    refused = np.asarray([c["refused"] for c in corpus])
    held = np.asarray([c["held_out"] for c in corpus])
    out = ~(scores["corpus"] <= threshold)  # NaN is out, as the runtime has it
    rows = meta["external"]
    seq = np.asarray([r["sequence"] for r in rows])
    external = scores["external"] > threshold
    in_train = scores["in_train"]
    result = {
        "val": float((scores["val"] > threshold).mean()),
        "ext_train_logo": float(external[in_train].mean()),
        "ext_val": float(external[~in_train].mean()),
        "dev": float((out | refused)[~held].mean()),
        "held": float((out | refused)[held].mean()),
        "dev_gate": float(out[~held & ~refused].mean()),
        "held_gate": float(out[held & ~refused].mean()),
    }
    for s in sorted(set(seq)):
        result[f"ext_val_{s}"] = float(external[~in_train & (seq == s)].mean())
    families = sorted({c["family"] for c in corpus})
    fam = np.asarray([c["family"] for c in corpus])
    for f in families:
        result[f"fam_{f}"] = float((out | refused)[fam == f].mean())
    return result


CANDIDATES = {
    "sep1 (served)": ("sep1.mean",),
    "sep1 mean+std": ("sep1.mean", "sep1.std"),
    "b13 mean": ("b13.mean",),
    "b13 mean+std": ("b13.mean", "b13.std"),
    "b12 mean": ("b12.mean",),
    "b12 mean+std": ("b12.mean", "b12.std"),
    "b8 mean+std": ("b8.mean", "b8.std"),
    "b4 mean+std": ("b4.mean", "b4.std"),
    "b3 mean+std": ("b3.mean", "b3.std"),
    "b2 mean+std": ("b2.mean", "b2.std"),
    "b1 mean+std": ("b1.mean", "b1.std"),
}


def run_score(args) -> None:
    from mri.card import read_card

    card = read_card(args.model)
    sets, meta = _load(OUT / card.version)
    table = {}
    all_scores = {}
    for name, spec in CANDIDATES.items():
        scores = gate_scores(sets, meta, spec)
        all_scores[name] = scores
        threshold = float(np.quantile(scores["train"], 0.995))
        table[name] = figures(scores, meta, threshold)
        print(name, json.dumps({k: round(v, 4) for k, v in table[name].items()}), flush=True)
    (OUT / card.version / "scores.npz").parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        OUT / card.version / "scores.npz",
        **{f"{n}|{k}": v for n, s in all_scores.items() for k, v in s.items()},
    )
    (OUT / card.version / "table.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["extract", "score"])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()
    if args.step == "extract":
        run_extract(args)
    else:
        run_score(args)
