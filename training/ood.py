"""`python -m training ood fit|evaluate|upload-check`: the out-of-distribution gate.

fit       fits the served score (mri/model/ood.py) on the training split's features, sets the
          threshold from training scores the fit did not see (5-fold cross-fitting), writes
          `ood.npz` and the card's `ood` section. Rerun it after every retraining.
evaluate  scores the validation scans and the development OOD corpus (training/ood_corpus.py)
          with several candidate scores and the served gate; prints and writes the figures.
upload-check  the upload-time content check (mri/intake/image_content.py) over the training
          scans and the OOD corpus.

Every figure comes from images put through the serving path (mri.model.preprocessing) with the
shipped weights; features are cached under var/ood/ (training/ood_features.py).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mri.card import DEFAULT_MODEL_DIR, ModelCard, write_card
from mri.intake.decode import decode_gray
from mri.model.ood import FIT_INPUT, GATE_INPUTS, LEGACY_INPUT, RANK, STATISTICS_FILE, MahalanobisScorer
from mri.model.store import sha256_file
from mri.vocabulary import CLASS_NAMES
from training.data import DEFAULT_DATA, SPLIT_FILE, load_split, samples_from_keys
from training.ood_corpus import corpus_features, upload_refusal

FOLDS = 5
# Share of in-distribution scans the threshold lets through: its quantile of cross-fitted
# training scores. Validation shows what that costs on scans the fit never saw.
THRESHOLD_QUANTILE = 0.995
SERVED = "mahalanobis_entry_r256"  # what `ood fit` fits (FIT_INPUT, RANK)
# Every EXPORT_VIEW_EVERY-th training scan is also fitted as exported with another display
# mapping, black + gain · gray^gamma clipped to [0, 1] (run_fit): air shown grey, another
# contrast, another gamma.
EXPORT_VIEW_EVERY = 2
EXPORT_VIEW_RANGES = {"black": (0.0, 0.25), "gain": (0.55, 1.0), "gamma": (0.7, 1.4)}
VIEW_SEED = 7
VIEW_RECIPE = "re-exported-v1"  # in the views' cache keys: change it when re_exported changes
# What a refit keeps of the gate it replaces (the card's `ood.replaces`).
REPLACED_KEYS = (
    "input",
    "features",
    "statistics_sha256",
    "threshold",
    "validation_rejected_count",
    "fitted",
    "command",
)


# --- candidate scores ----------------------------------------------------------------------
# Each maps (training features, training labels) to a function of features giving scores,
# higher = less like the training scans. All use only what one forward pass yields.

Features = dict[str, np.ndarray]
Scorer = Callable[[Features], np.ndarray]


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    peak = logits.max(axis=1, keepdims=True)
    return (peak + np.log(np.exp(logits - peak).sum(axis=1, keepdims=True)))[:, 0]


def _mahalanobis(layer: str, rank: int | None = None) -> Callable[[Features, np.ndarray], Scorer]:
    def fit(train: Features, labels: np.ndarray) -> Scorer:
        scorer = MahalanobisScorer.fit(train[layer], labels, rank)
        return lambda f: scorer.scores(f[layer])

    return fit


def _no_fit(score: Callable[[Features], np.ndarray]) -> Callable[[Features, np.ndarray], Scorer]:
    return lambda _train, _labels: score


CANDIDATES: dict[str, Callable[[Features, np.ndarray], Scorer]] = {
    "mahalanobis_pool": _mahalanobis("pool"),
    "mahalanobis_sep1": _mahalanobis("sep1"),
    "mahalanobis_sep1_r256": _mahalanobis("sep1", RANK),
    "mahalanobis_entry": _mahalanobis("entry"),
    "mahalanobis_entry_r256": _mahalanobis("entry", RANK),
    "mahalanobis_dense": _mahalanobis("dense"),
    "energy": _no_fit(lambda f: -_logsumexp(f["logits"].astype(np.float64))),
    "max_logit": _no_fit(lambda f: -f["logits"].max(axis=1).astype(np.float64)),
    "max_softmax": _no_fit(lambda f: -np.exp(f["logits"].max(axis=1) - _logsumexp(f["logits"].astype(np.float64)))),
}


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Probability that an OOD image scores above an in-distribution one (ties count half)."""
    from sklearn.metrics import roc_auc_score

    values = np.concatenate([in_scores, out_scores])
    truth = np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))])
    return float(roc_auc_score(truth, np.nan_to_num(values, nan=np.inf, posinf=1e300)))


def cross_fitted_scores(
    fit: Callable[[Features, np.ndarray], Scorer], train: Features, labels: np.ndarray
) -> np.ndarray:
    """Each training scan scored by a fit on the other folds (stratified, fixed seed)."""
    from sklearn.model_selection import StratifiedKFold

    scores = np.zeros(len(labels))
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=1337)
    for fit_rows, score_rows in folds.split(np.zeros(len(labels)), labels):
        scorer = fit({k: v[fit_rows] for k, v in train.items()}, labels[fit_rows])
        scores[score_rows] = scorer({k: v[score_rows] for k, v in train.items()})
    return scores


# --- the features of each set ----------------------------------------------------------------


@dataclass
class Sets:
    train: Features
    train_labels: np.ndarray
    val: Features
    val_labels: np.ndarray
    model_version: str
    train_paths: list[Path]  # the files of `train`'s rows


def split_features(model_dir: Path, data: Path, split_file: Path, every: int = 1) -> tuple[Sets, object, dict]:
    """Features of the validation scans and of every `every`-th training scan (in class order, so
    the subset keeps the class proportions)."""
    from mri.model.store import load_classifier
    from training.ood_features import cached_file_features, feature_model

    model, card = load_classifier(model_dir)
    features = feature_model(model)
    split = load_split(split_file)
    parts = {}
    for part in ("val", "train"):
        samples = samples_from_keys(data, split[part])
        samples = samples[::every] if part == "train" else samples
        found = cached_file_features(
            features,
            card.version,
            card.input_size,
            [s.path for s in samples],
            f"scans-{part}",
            head_crop=card.head_crop,
        )
        parts[part] = (found, np.asarray([s.label for s in samples]), [s.path for s in samples])
    sets = Sets(parts["train"][0], parts["train"][1], parts["val"][0], parts["val"][1], card.version, parts["train"][2])
    return sets, features, card


# --- fit -------------------------------------------------------------------------------------


def external_clusters(
    part: str, features: object, card: ModelCard, split_file: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gate features (FIT_INPUT) of one part of the external set's patient-group split, each labelled with a
    cluster of its own per (label, sequence) cell (numbered after the 4 classes): real MRI from
    other sources and sequences, which the gate must keep, becomes in-distribution as itself
    rather than stretching the training classes' means. Also each slice's patient group."""
    from training.external import EXTERNAL_DATA, EXTERNAL_SPLIT_FILE, load_external_split, rows_for_keys
    from training.ood_features import cached_file_features

    rows = rows_for_keys(EXTERNAL_DATA, load_external_split(split_file or EXTERNAL_SPLIT_FILE)[part])
    paths = [EXTERNAL_DATA / r.key for r in rows]
    found = cached_file_features(features, card.version, card.input_size, paths, "external", head_crop=card.head_crop)
    if not found["decoded"].all():
        raise ValueError(f"{int((~found['decoded']).sum())} external slices could not be decoded")
    cells = sorted({r.cell for r in rows})
    clusters = np.asarray([len(CLASS_NAMES) + cells.index(r.cell) for r in rows])
    return found[FIT_INPUT], clusters, np.asarray([r.patient_group for r in rows])


def export_views(features: object, card: ModelCard, paths: list[Path]) -> np.ndarray:
    """Gate features (FIT_INPUT) of these scans exported with another display mapping, one view
    each (training.robustness.re_exported; black, gain and gamma drawn from EXPORT_VIEW_RANGES
    with a fixed seed, gamma log-uniform)."""
    from training.ood_features import cached_features
    from training.robustness import re_exported

    rng = np.random.default_rng(VIEW_SEED)
    (b0, b1), (g0, g1), (e0, e1) = (EXPORT_VIEW_RANGES[k] for k in ("black", "gain", "gamma"))
    drawn = zip(
        rng.uniform(b0, b1, len(paths)),
        rng.uniform(g0, g1, len(paths)),
        np.exp(rng.uniform(np.log(e0), np.log(e1), len(paths))),
        strict=True,
    )
    items = [
        (
            f"{path}#{VIEW_RECIPE}-{black:.5f}-{gain:.5f}-{gamma:.5f}",
            lambda path=path, black=black, gain=gain, gamma=gamma: re_exported(path.read_bytes(), black, gain, gamma),
        )
        for path, (black, gain, gamma) in zip(paths, drawn, strict=True)
    ]
    found = cached_features(features, card.version, card.input_size, items, "export-views", head_crop=card.head_crop)
    if not found["decoded"].all():
        raise ValueError(f"{int((~found['decoded']).sum())} export views could not be decoded")
    return found[FIT_INPUT]


def left_out_rejections(
    fitted: np.ndarray, fitted_labels: np.ndarray, extra: np.ndarray, extra_labels, groups: np.ndarray, threshold: float
) -> dict:
    """Each patient group of the external part scored by a gate fitted without it (the rest as
    served): the honest estimate of what the gate does to real MRI from a source it never saw."""
    rejected = np.zeros(len(extra), bool)
    for group in np.unique(groups):
        held = groups == group
        scorer = MahalanobisScorer.fit(
            np.concatenate([fitted, extra[~held]]), np.concatenate([fitted_labels, extra_labels[~held]]), RANK
        )
        rejected[held] = ~(scorer.scores(extra[held]) <= threshold)
    return {
        "groups": len(np.unique(groups)),
        "slices": len(extra),
        "rejected": int(rejected.sum()),
        "rate": round(float(rejected.mean()), 5) if len(extra) else None,
    }


def cross_fitted_gate(
    train: np.ndarray, labels: np.ndarray, views: np.ndarray, view_rows: np.ndarray, extra: np.ndarray, extra_labels
) -> tuple[np.ndarray, np.ndarray]:
    """Each training scan, and each export view, scored by a gate fitted without its scan's fold
    (a view goes with the scan it was made from; the external slices are in every fit)."""
    from sklearn.model_selection import StratifiedKFold

    scores, view_scores = np.zeros(len(labels)), np.zeros(len(view_rows))
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=1337)
    for fit_rows, score_rows in folds.split(np.zeros(len(labels)), labels):
        fitted = np.zeros(len(labels), bool)
        fitted[fit_rows] = True
        in_fit = fitted[view_rows]
        scorer = MahalanobisScorer.fit(
            np.concatenate([train[fitted], views[in_fit], extra]),
            np.concatenate([labels[fitted], labels[view_rows][in_fit], extra_labels]),
            RANK,
        )
        scores[score_rows] = scorer.scores(train[score_rows])
        view_scores[~in_fit] = scorer.scores(views[~in_fit])
    return scores, view_scores


def run_fit(args: argparse.Namespace) -> int:
    sets, features, card = split_features(args.model, args.data, args.split, args.every)
    train, labels = sets.train[FIT_INPUT], sets.train_labels
    extra, extra_labels = np.zeros((0, train.shape[1])), np.zeros(0, dtype=labels.dtype)
    groups = np.zeros(0, dtype=str)
    if args.external_part:
        extra, extra_labels, groups = external_clusters(args.external_part, features, card, args.external_split)
    # Real slices exported with air shown grey must not look like non-MRI to a gate that reads
    # texture (`python -m training robustness`: 24 % of low-contrast exports were rejected
    # without these views).
    view_rows = np.arange(0, len(labels), EXPORT_VIEW_EVERY)
    views = export_views(features, card, [sets.train_paths[i] for i in view_rows])
    oof, view_oof = cross_fitted_gate(train, labels, views, view_rows, extra, extra_labels)
    # The threshold: the quantile of the training merge's scans and their export views (the
    # external slices are few and would set it by themselves).
    threshold = float(np.quantile(np.concatenate([oof, view_oof]), THRESHOLD_QUANTILE))
    merge, merge_labels = np.concatenate([train, views]), np.concatenate([labels, labels[view_rows]])
    fit_features = np.concatenate([merge, extra])
    scorer = MahalanobisScorer.fit(fit_features, np.concatenate([merge_labels, extra_labels]), RANK)
    gate_input = GATE_INPUTS[FIT_INPUT]
    path = Path(args.model) / STATISTICS_FILE
    scorer.save(path)
    val_scores = scorer.scores(sets.val[FIT_INPUT])
    val_rejected = ~(val_scores <= threshold)
    left_out = left_out_rejections(merge, merge_labels, extra, extra_labels, groups, threshold)
    previous = card.get("ood")
    card["ood"] = {
        "method": "class-conditional Mahalanobis distance (shared Ledoit-Wolf covariance, its "
        f"{RANK} leading directions plus one variance for the rest) of {gate_input.describe()} pooled over "
        f"space ({gate_input.pooling} per channel) to the nearest class mean, per dimension",
        "input": FIT_INPUT,
        "features": f"{gate_input.describe()}, spatial {gate_input.pooling} ({fit_features.shape[1]})",
        "statistics_file": STATISTICS_FILE,
        "statistics_sha256": sha256_file(path),
        "threshold": round(threshold, 6),
        "threshold_rule": f"{THRESHOLD_QUANTILE:.1%} quantile of the training-split scans' and their export views' "
        f"scores, each from a fit on the other {FOLDS - 1} of {FOLDS} folds",
        "export_views": {
            "every": EXPORT_VIEW_EVERY,
            "count": len(view_rows),
            "what": "black + gain · gray^gamma (training.robustness.re_exported), drawn from "
            + ", ".join(f"{k} {lo}-{hi}" for k, (lo, hi) in EXPORT_VIEW_RANGES.items()),
            "seed": VIEW_SEED,
        },
        "fitted_on": f"training split, every {args.every} scan(s) in class order ({len(labels)} scans, "
        f"{len(view_rows)} of them also as an export view)"
        + (
            f" + the external set's {args.external_part} part ({len(extra_labels)} slices, "
            "one cluster per (label, sequence) cell)"
            if args.external_part
            else ""
        ),
        "external_part": args.external_part,
        "train_every": args.every,
        "validation_rejected": round(float(val_rejected.mean()), 5),
        "validation_rejected_count": int(val_rejected.sum()),
        "validation_scans": len(sets.val_labels),
        "external_left_out": left_out,
        "command": "python -m training ood fit"
        + (f" --every {args.every}" if args.every != 1 else "")
        + (f" --external-part {args.external_part}" if args.external_part else "")
        + (f" --external-split {args.external_split}" if args.external_split else ""),
        "fitted": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if previous:  # the gate this one replaces, in one line of history
        card["ood"]["replaces"] = {key: previous.get(key) for key in REPLACED_KEYS} | {
            "input": previous.get("input", LEGACY_INPUT)
        }
    write_card(args.model, card)
    print(
        f"threshold {threshold:.4f} ({THRESHOLD_QUANTILE:.1%} of cross-fitted training scores); validation scans "
        f"rejected: {int(val_rejected.sum())} of {len(val_rejected)} ({val_rejected.mean():.2%}); external slices "
        f"rejected with their patient group left out of the fit: {left_out['rejected']} of {left_out['slices']} "
        f"→ {path.name}, card"
    )
    return 0


# --- evaluate --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateFigures:
    threshold: float
    val_rejected: float
    auroc_dev: float
    auroc_held_out: float
    dev_rejected: float  # of development OOD images that pass the upload check
    held_out_rejected: float
    dev_rejected_overall: float  # upload check + gate, of all development OOD images
    held_out_rejected_overall: float


def gate_figures(
    threshold: float, val_scores: np.ndarray, ood_scores: np.ndarray, held_out: np.ndarray, refused: np.ndarray
) -> GateFigures:
    reaches = ~refused  # the gate only sees what the upload check let through
    dev, hold = reaches & ~held_out, reaches & held_out
    rejected = (ood_scores > threshold) | refused
    return GateFigures(
        threshold=threshold,
        val_rejected=float((val_scores > threshold).mean()),
        auroc_dev=auroc(val_scores, ood_scores[dev]),
        auroc_held_out=auroc(val_scores, ood_scores[hold]),
        dev_rejected=float((ood_scores[dev] > threshold).mean()),
        held_out_rejected=float((ood_scores[hold] > threshold).mean()),
        dev_rejected_overall=float(rejected[~held_out].mean()),
        held_out_rejected_overall=float(rejected[held_out].mean()),
    )


def run_evaluate(args: argparse.Namespace) -> int:
    from mri.model.ood import load_gate

    args.out = args.out or Path(args.model) / "ood"

    sets, features, card = split_features(args.model, args.data, args.split, args.every)
    corpus, ood, refused = corpus_features(features, card)
    held_out = np.asarray([i.held_out for i in corpus])
    report: dict = {"model_version": card.version, "candidates": {}}
    report["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(
        f"{len(sets.val_labels)} validation scans; OOD corpus {len(corpus)} images ({int((~held_out).sum())} "
        f"development, {int(held_out.sum())} held out; {int(refused.sum())} refused at upload)"
    )
    header = (
        f"{'score':<20} {'threshold':>10} {'val rej':>8} {'AUROC dev':>10} {'AUROC held':>10} {'dev rej':>8} "
        f"{'held rej':>9}"
    )
    print(
        "\ncandidates (threshold: 99.5 % quantile of cross-fitted training scores; rejected: of the images "
        "that pass the upload check)"
    )
    print(header)
    for name, fit in CANDIDATES.items():
        oof = cross_fitted_scores(fit, sets.train, sets.train_labels)
        scorer = fit(sets.train, sets.train_labels)
        figures = gate_figures(
            float(np.quantile(oof, THRESHOLD_QUANTILE)), scorer(sets.val), scorer(ood), held_out, refused
        )
        report["candidates"][name] = figures.__dict__
        print(_row(name, figures))

    gate = load_gate(args.model, card)
    if gate is None:
        print("\nthe model card has no `ood` section: run `python -m training ood fit` first")
        _write(args.out, report)
        return 1
    val_scores = gate.scorer.scores(sets.val[gate.input_name])
    ood_scores = gate.scorer.scores(np.nan_to_num(ood[gate.input_name]))
    ood_scores[~ood["decoded"]] = np.inf
    served = gate_figures(gate.threshold, val_scores, ood_scores, held_out, refused)
    report["served"] = served.__dict__
    print(f"\nserved (Mahalanobis on {gate.input_name}, threshold from the card):")
    print(header)
    print(_row(f"served ({gate.input_name})", served))

    accepted = val_scores <= gate.threshold
    predicted = sets.val["logits"].argmax(axis=1)
    correct = predicted == sets.val_labels
    report["validation_accuracy"] = {
        "all": float(correct.mean()),
        "accepted": float(correct[accepted].mean()),
        "rejected_count": int((~accepted).sum()),
        "rejected_wrong": int((~correct[~accepted]).sum()),
    }
    print(
        f"\nvalidation accuracy: all {correct.mean():.2%} ({len(correct)}), accepted {correct[accepted].mean():.2%} "
        f"({int(accepted.sum())}); rejected {int((~accepted).sum())} scans, of which "
        f"{int((~correct[~accepted]).sum())} were misclassified"
    )
    print("\nper family (served gate): images, refused at upload, rejected by the gate, rejected in all")
    families: dict = {}
    for family in dict.fromkeys(i.family for i in corpus):
        rows = np.asarray([i.family == family for i in corpus])
        gated = rows & ~refused
        families[family] = {
            "held_out": bool(held_out[rows][0]),
            "images": int(rows.sum()),
            "refused_at_upload": int((rows & refused).sum()),
            "rejected_by_gate": int((ood_scores[gated] > gate.threshold).sum()),
            "accepted": [corpus[i].name for i in np.flatnonzero(gated & (ood_scores <= gate.threshold))],
        }
        entry = families[family]
        total = entry["refused_at_upload"] + entry["rejected_by_gate"]
        print(
            f"  {family:<16} {'held out' if entry['held_out'] else 'dev':<9} {entry['images']:>4} "
            f"{entry['refused_at_upload']:>4} {entry['rejected_by_gate']:>4} {total / entry['images']:>8.1%}"
            + (f"   accepted: {', '.join(entry['accepted'][:6])}" if entry["accepted"] else "")
        )
    report["families"] = families
    report["external_mri"] = external_mri_scores(gate, features, card)
    print("\nbrain MRI from elsewhere (should be accepted):")
    for name, score in report["external_mri"].items():
        print(f"  {name:<44} score {score:8.3f}  {'rejected' if score > gate.threshold else 'accepted'}")
    _write(args.out, report)
    plot_scores(args.out / "ood_scores.png", val_scores, ood_scores, held_out, refused, gate.threshold)
    print(f"\n→ {args.out / 'ood_report.json'}, {args.out / 'ood_scores.png'}")
    return 0


def external_mri_scores(gate: object, features: object, card: ModelCard) -> dict[str, float]:
    """Brain MRI slices not from the training sources: matplotlib's sagittal head MRI
    (s1045.ima, 16-bit) and pydicom's MR_small (64 px, enlarged as a viewer would)."""
    import matplotlib.cbook

    from training.ood_corpus import _dicom_images, encode, to_uint8
    from training.ood_features import extract

    with matplotlib.cbook.get_sample_data("s1045.ima.gz") as handle:
        sagittal = np.frombuffer(handle.read(), np.uint16).reshape(256, 256)
    images = {"matplotlib s1045.ima (sagittal head MRI)": encode(to_uint8(sagittal))}
    for name, pixels in _dicom_images(("MR_small.dcm",)):
        if name.endswith("-0"):
            images["pydicom MR_small.dcm (64 px, enlarged)"] = encode(pixels)
    found = extract(
        features,
        [lambda d=d: d for d in images.values()],
        card.input_size,
        desc="external",
        head_crop=card.head_crop,
    )
    scores = gate.scorer.scores(found[gate.input_name])  # type: ignore[attr-defined]
    return {name: float(s) for name, s in zip(images, scores, strict=True)}


def plot_scores(
    path: Path, val: np.ndarray, ood: np.ndarray, held_out: np.ndarray, refused: np.ndarray, threshold: float
) -> None:
    from training.plots import pyplot

    plt = pyplot()

    figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
    finite = np.concatenate([val, ood[np.isfinite(ood)]])
    bins = np.logspace(np.log10(max(finite.min(), 1e-3)), np.log10(finite.max()), 60)
    axes.hist(val, bins=bins, alpha=0.7, label=f"validation brain MRI ({len(val)})")
    axes.hist(ood[~held_out & ~refused], bins=bins, alpha=0.6, label="OOD, development families")
    axes.hist(ood[held_out & ~refused], bins=bins, alpha=0.6, label="OOD, held-out families")
    axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.2f}")
    axes.set_xscale("log")
    axes.set_xlabel("OOD score (Mahalanobis distance² per dimension, log scale)")
    axes.set_ylabel("images")
    axes.legend(fontsize=8)
    axes.set_title("Out-of-distribution gate (images refused at upload not shown)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _row(name: str, f: GateFigures) -> str:
    return (
        f"{name:<20} {f.threshold:>10.4f} {f.val_rejected:>8.2%} {f.auroc_dev:>10.4f} {f.auroc_held_out:>10.4f} "
        f"{f.dev_rejected:>8.1%} {f.held_out_rejected:>9.1%}"
    )


def _write(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "ood_report.json").write_text(json.dumps(report, indent=2) + "\n")


# --- upload-check ----------------------------------------------------------------------------


def run_upload_check(args: argparse.Namespace) -> int:
    from mri.intake.image_content import MIN_NEIGHBOUR_CORRELATION, MIN_SPREAD, content_stats
    from training.data import list_samples
    from training.ood_corpus import build_corpus

    samples = list_samples(args.data)
    stats = [content_stats(decode_gray(s.path.read_bytes())) for s in samples]
    spread = np.asarray([s.spread for s in stats])
    correlation = np.asarray([s.neighbour_correlation for s in stats])
    refused = (spread < MIN_SPREAD) | (correlation < MIN_NEIGHBOUR_CORRELATION)
    print(
        f"{len(samples)} training-folder scans: refused {int(refused.sum())}; smallest spread {spread.min():.3f} "
        f"(limit {MIN_SPREAD}), smallest neighbour correlation {correlation.min():.3f} "
        f"(limit {MIN_NEIGHBOUR_CORRELATION})"
    )
    corpus = build_corpus()
    for family in dict.fromkeys(i.family for i in corpus):
        messages = [upload_refusal(i.data) for i in corpus if i.family == family]
        print(f"  {family:<16} refused {sum(m is not None for m in messages):>3} of {len(messages)}")
    return 0


def run_colour_evidence(args: argparse.Namespace) -> int:
    from training.gate_evidence import run

    args.out = args.out or Path(args.model) / "ood"
    return run(args)


def add_parser(commands: argparse._SubParsersAction) -> None:
    ood = commands.add_parser("ood", help="out-of-distribution gate: fit, evaluate, upload-check")
    verbs = ood.add_subparsers(dest="ood_command", required=True)
    for verb, text, func in (
        ("fit", "fit the gate on the training split and write it into the model card", run_fit),
        ("evaluate", "the gate's figures on validation scans and the development OOD corpus", run_evaluate),
        ("upload-check", "the upload-time blank/noise check over the training scans and the corpus", run_upload_check),
        (
            "colour-evidence",
            "what the colour evidence adds: external MRI kept, non-MRI rejected per family",
            run_colour_evidence,
        ),
    ):
        parser = verbs.add_parser(verb, help=text)
        parser.set_defaults(func=func)
        parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
        parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
        parser.add_argument("--split", type=Path, default=SPLIT_FILE)
        if verb not in ("upload-check", "colour-evidence"):
            parser.add_argument(
                "--every", type=int, default=1, help="fit on every N-th training scan (1: all; a CPU-time budget)"
            )
        if verb == "fit":
            parser.add_argument(
                "--external-part",
                choices=("train",),
                default=None,
                help="also fit on the external set's train part (patient groups a model may train on)",
            )
            parser.add_argument(
                "--external-split", type=Path, default=None, help="the external split file (default: the committed one)"
            )
        if verb in ("evaluate", "colour-evidence"):
            parser.add_argument("--out", type=Path, default=None, help="default: <model>/ood")
