"""What each CLI command does, kept apart from argument parsing."""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mri.vocabulary import CLASS_NAMES
from training.data import DEFAULT_DATA, list_samples, load_split, make_split, samples_from_keys

REPO = Path(__file__).resolve().parents[1]
SMOKE_PER_CLASS = {"train": 6, "val": 3}
DEFAULT_BOXES = DEFAULT_DATA.parent / "tumor-boxes.csv"


def run_split(args: argparse.Namespace) -> int:
    split = make_split(args.data, args.val_fraction, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(split))
    print(
        f"{len(split['train'])} train, {len(split['val'])} validation scans in {split['groups']} near-duplicate groups "
        f"(largest {split['largest_group']}) → {args.out}"
    )
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from training.pack import build_pack

    keys = _split_keys(load_split(args.split))
    if args.only:
        keys = {key: part for key, part in keys.items() if part == args.only}
    samples = [s for s in list_samples(args.data) if s.key in keys]
    build_pack(
        samples,
        [keys[s.key] for s in samples],
        args.out,
        args.stored_size,
        head_crop=args.head_crop,
        quality=args.quality,
    )
    print(f"packed {len(samples)} scans at {args.stored_size} px ({args.head_crop} crop) → {args.out}")
    return 0


def _split_keys(split: dict) -> dict[str, str]:
    return {**dict.fromkeys(split["train"], "train"), **dict.fromkeys(split["val"], "val")}


def _smoke_split(split: dict) -> dict:
    """A few scans of each class from each side of the real split."""
    smoke = {}
    for part, count in SMOKE_PER_CLASS.items():
        smoke[part] = [k for name in CLASS_NAMES for k in [x for x in split[part] if x.startswith(name + "/")][:count]]
    return smoke


def run_train(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """`argv` (default: this process's) is recorded in the card as the command that trained it."""
    from mri.card import write_card
    from mri.model.store import save_weights_fp16
    from training.pack import build_pack, load_pack
    from training.train import TrainConfig, architecture_of, plot_history, read_history, train

    split = load_split(args.split)
    if args.smoke:
        split = _smoke_split(split)
        args.input_size, args.batch_size, args.head_epochs, args.finetune_epochs = 96, 6, 1, 1
        args.first_block = 13
        if args.backbone_weights and not Path(args.backbone_weights).exists():
            args.backbone_weights = "none"
    keys = _split_keys(split)
    if args.pack:
        pack = load_pack(args.pack)
    else:
        cache = REPO / "var" / "cache" / f"pack-{'smoke' if args.smoke else 'full'}-256-{args.head_crop}"
        if not (cache / "pack.json").exists():
            samples = [s for s in list_samples(args.data) if s.key in keys]
            build_pack(samples, [keys[s.key] for s in samples], cache, 256, head_crop=args.head_crop)
        pack = load_pack([cache])
    if pack.head_crop != args.head_crop:
        raise SystemExit(f"the pack was prepared with the {pack.head_crop!r} head crop, not {args.head_crop!r}")
    config = TrainConfig.from_args(args)
    weights = None if args.backbone_weights in (None, "none") else args.backbone_weights
    started = time.monotonic()
    model = train(pack, args.run_dir, config, weights, resume=args.resume)
    minutes = (time.monotonic() - started) / 60

    model_dir = args.run_dir / "model"
    hashes = save_weights_fp16(model, model_dir)
    (model_dir / "split.json").write_text(json.dumps({"train": split["train"], "val": split["val"]}))
    plot_history(args.run_dir, model_dir / "training_curves.png")
    history = read_history(args.run_dir)
    card = {
        "version": f"{args.version}-{datetime.now(UTC):%Y%m%d-%H%M}",
        "architecture": architecture_of(model),
        "head_units": int(model.get_layer("head_dense").units),
        "input_size": config.input_size,
        "preprocessing": {"head_crop": config.head_crop},
        "class_names": list(CLASS_NAMES),
        "temperature": 1.0,
        "weights_dtype": "float16",
        "weights_sha256": hashes,
        "data": {
            "source": "shared/datasets/brain-mri/Training (5,712 scans)",
            "train_scans": len(split["train"]),
            "validation_scans": len(split["val"]),
            "split": "stratified by class; pHash near-duplicate groups (≤6 of 64 bits) kept on one side",
        },
        "recipe": {
            **config.__dict__,
            "backbone_weights": "imagenet" if weights and not config.init_model else None,
            "stored_size": pack.stored_size,
            "smoke": bool(args.smoke),
        },
        "command": "python -m training " + shlex.join((sys.argv if argv is None else argv)[1:]),
        "train_wall_minutes": round(minutes, 2),
        "hardware": _hardware(),
        "training_history": history,
        "libraries": library_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_card(model_dir, card)
    print(f"model written to {model_dir} ({minutes:.1f} min)")
    return 0


def _hardware() -> str:
    import os

    import keras

    devices = []
    if keras.backend.backend() == "jax":
        import jax

        devices = [d.device_kind for d in jax.devices()]
    return f"{', '.join(devices) or platform.processor() or 'cpu'}; {os.cpu_count()} CPU cores"


def library_versions() -> dict[str, str]:
    import keras

    versions = {
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    try:
        backend = __import__({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[keras.backend.backend()])
        versions[keras.backend.backend()] = backend.__version__
    except (ImportError, KeyError):
        pass
    return versions


def _validation_samples(model_dir: Path, data: Path) -> list:
    split_file = Path(model_dir) / "split.json"
    split = json.loads(split_file.read_text()) if split_file.exists() else load_split()
    return samples_from_keys(data, split["val"])


def run_calibrate(args: argparse.Namespace) -> int:
    from mri.card import write_card
    from mri.model.probabilities import calibrated_probabilities
    from mri.model.store import load_classifier
    from training.calibrate import fit_temperature
    from training.metrics import summarize
    from training.plots import plot_confusion, plot_reliability
    from training.scoring import scan_logits

    model, card = load_classifier(args.model)
    samples = _validation_samples(args.model, args.data)
    true = np.array([s.label for s in samples])
    logits = scan_logits(model, [s.path for s in samples], card.input_size, head_crop=card.head_crop)
    temperature = fit_temperature(logits, true)
    before = summarize(calibrated_probabilities(logits, 1.0), true, CLASS_NAMES)
    after = summarize(calibrated_probabilities(logits, temperature), true, CLASS_NAMES)
    card["temperature"] = round(temperature, 5)
    card["validation"] = {
        "n": after["n"],
        "uncalibrated": _headline(before),
        "calibrated": _headline(after),
        "per_class": after["per_class"],
        "confusion_matrix": after["confusion_matrix"],
        "measured_with": "serving preprocessing on the original files, float16 weights",
    }
    card["check_list"] = check_list(samples, logits)
    write_card(args.model, card)
    plot_reliability(
        calibrated_probabilities(logits, temperature), true, Path(args.model) / "reliability.png", after["ece_15"]
    )
    plot_confusion(
        np.array(after["confusion_matrix"]),
        CLASS_NAMES,
        Path(args.model) / "confusion_matrix.png",
        title=f"Validation split (n={after['n']})",
    )
    print(
        f"temperature {temperature:.4f}; validation accuracy {after['accuracy']:.4f}, "
        f"ECE {before['ece_15']:.4f} → {after['ece_15']:.4f}, NLL {before['nll']:.4f} → {after['nll']:.4f}"
    )
    return 0


def check_list(samples: list, logits: np.ndarray, per_class: int = 25) -> dict:
    """A fixed list of validation scans and the model's accuracy on it, for the load test."""
    chosen = [
        i
        for label in range(len(CLASS_NAMES))
        for i in [j for j, s in enumerate(samples) if s.label == label][:per_class]
    ]
    correct = logits[chosen].argmax(1) == np.array([samples[i].label for i in chosen])
    return {"keys": [samples[i].key for i in chosen], "accuracy": round(float(correct.mean()), 5)}


def _headline(metrics: dict) -> dict:
    return {key: round(metrics[key], 5) for key in ("accuracy", "macro_f1", "ece_15", "nll", "brier")}


def run_evaluate(args: argparse.Namespace) -> int:
    from mri.card import DEFAULT_MODEL_DIR
    from training.evaluate import evaluate

    metrics = evaluate(args.data, args.out, args.model or DEFAULT_MODEL_DIR, split_file=args.split, part=args.part)
    print(
        f"n={metrics['n']} accuracy {metrics['accuracy']:.4f} macro-F1 {metrics['macro_f1']:.4f} "
        f"ECE {metrics['ece_15']:.4f} → {args.out}"
    )
    if args.record_card:
        record_sequences(args.model or DEFAULT_MODEL_DIR, metrics)
    for sequence, row in metrics.get("per_sequence", {}).items():
        tumour, free = row.get("tumour"), row.get("notumor")
        print(
            f"{sequence:>17}: n={row['n']:>3} rejected {row['rejected']:>3}  ECE {row['ece_15']}"
            + (
                f"  tumour sensitivity {tumour['sensitivity']} ({tumour['called_notumor']} called no tumour)"
                if tumour
                else ""
            )
            + (f"  no-tumour specificity {free['specificity']}" if free else "")
        )
    return 0


def record_sequences(model_dir: Path, metrics: dict) -> None:
    """Write the card's `sequences` section (training.external.sequence_section)."""
    from mri.card import read_card, write_card
    from training.external import sequence_section

    if metrics.get("part") != "val" or "per_sequence" not in metrics:
        raise SystemExit("--record-card needs the external set's validation part (--part val)")
    card = read_card(model_dir)
    card["sequences"] = sequence_section(card, metrics, "python -m training " + shlex.join(sys.argv[1:]))
    write_card(model_dir, card)
    print(f"model card {model_dir}: validated on {', '.join(card.sequences['validated_names']) or 'no sequence'}")


def run_robustness(args: argparse.Namespace) -> int:
    from mri.card import DEFAULT_MODEL_DIR
    from training.robustness import robustness_report

    model_dir = args.model or DEFAULT_MODEL_DIR
    samples = _validation_samples(model_dir, args.data)
    if args.limit:
        # The same number of scans from each class, in split order.
        per_class = max(1, args.limit // len(CLASS_NAMES))
        samples = [s for label in range(len(CLASS_NAMES)) for s in [x for x in samples if x.label == label][:per_class]]
    report = robustness_report(model_dir, samples, args.out)
    for name, row in report.items():
        rejected = f"  gate rejected {row['gate_rejected_count']}" if "gate_rejected" in row else ""
        print(f"{name:>24}: accuracy {row['accuracy']:.4f}  notumor recall {row['recall']['notumor']:.4f}{rejected}")
    return 0


def run_promote(args: argparse.Namespace) -> int:
    from training.promote import promote

    decision = promote(args.candidate, args.into, dry_run=args.dry_run)
    for metric, row in decision["comparison"].items():
        verdict = "passes" if row["passes"] else "FAILS"
        print(
            f"{metric:>34}: candidate {row['candidate']:.5f}  shipped {row['shipped']:.5f}  ({row['rule']}) {verdict}"
        )
    if decision["promoted"]:
        print(f"{decision['candidate']} now ships in {args.into} ({decision['shipped']} is in its card's history)")
    else:
        print(f"not shipped: {decision['shipped']} stays ({args.candidate}/promotion.json)")
    return 0


def run_explain_eval(args: argparse.Namespace) -> int:
    from mri.card import DEFAULT_MODEL_DIR
    from mri.model.cams import CAM_METHODS, parse_method
    from training.explain_eval import explain_eval

    if args.layers and (not args.method or len(args.method) != 1):
        raise SystemExit("--layers applies to one --method")
    if args.ship and (args.limit or args.part or (Path(args.data) / "manifest.csv").exists()):
        # The card's figures are what promote compares between models: always the same scans.
        raise SystemExit("--ship records figures on every boxed validation scan of the training merge: "
                         "no --limit, no external --data")
    names = args.method or list(CAM_METHODS)
    methods = {name: parse_method(name, args.layers) for name in names}
    model_dir = args.model or DEFAULT_MODEL_DIR
    samples, groups, boxes = _validation_samples(model_dir, args.data), None, args.boxes
    if (Path(args.data) / "manifest.csv").exists():
        # The external set: its own boxes (glioma masks), its split's part, figures per sequence.
        from training.data import samples_from_keys
        from training.external import SEQUENCE_NAMES, load_external_split, read_manifest

        rows = read_manifest(args.data)
        keys = load_external_split()[args.part] if args.part else [r.key for r in rows]
        samples = samples_from_keys(args.data, keys)
        groups = {r.key: SEQUENCE_NAMES[r.sequence] for r in rows}
        boxes = args.boxes if args.boxes != DEFAULT_BOXES else Path(args.data) / "boxes.csv"
    elif args.part:
        raise SystemExit("--part needs a data folder with a manifest.csv (the external set)")
    report = explain_eval(
        model_dir,
        samples,
        boxes,
        args.out,
        methods,
        limit=args.limit,
        reference_every=args.reference_every,
        reference_channels=args.reference_channels,
        groups=groups,
    )
    print(f"{report['scans']} boxed validation scans, model {report['model_version']}")
    for name, row in report["methods"].items():
        per_class = " ".join(f"{c} {v['pointing']}" for c, v in row["all"]["per_class"].items())
        print(
            f"{name:>16}: pointing {row['all']['pointing']} energy {row['all']['energy_in_box']} ({per_class})"
            f"  on the reference subset: {row['reference_subset']['pointing']}"
        )
        for group, figures in row["all"].get("per_group", {}).items():
            print(
                f"{'':>16}  {group}: n={figures['n']} pointing {figures['pointing']} energy {figures['energy_in_box']}"
            )
    print(f"→ {args.out}/explain_eval.json, contact_sheet.png ({report['contact_sheet_method']})")
    if args.ship:
        ship_heatmap_method(model_dir, report, args.ship, argv_command="python -m training " + shlex.join(sys.argv[1:]))
    return 0


def ship_heatmap_method(model_dir: Path, report: dict, method: str, argv_command: str) -> None:
    """Record the heatmap method the workers use, with its localization figures, in the card."""
    from mri.card import read_card, write_card
    from mri.model.cams import CAM_METHODS

    if method not in report["methods"] or method not in CAM_METHODS:
        raise SystemExit(f"--ship {method}: not among the methods scored ({', '.join(report['methods'])})")
    card = read_card(model_dir)
    row = report["methods"][method]
    card["heatmap_method"] = method
    card["heatmap_localization"] = {
        "method": method,
        "spec": row["spec"],
        "scans": report["scans"],
        "pointing": row["all"]["pointing"],
        "energy_in_box": row["all"]["energy_in_box"],
        "per_class": row["all"]["per_class"],
        "pointing_tolerance_px": report["pointing_tolerance_px"],
        "baseline": {
            name: {"pointing": other["all"]["pointing"], "energy_in_box": other["all"]["energy_in_box"]}
            for name, other in report["methods"].items()
            if name != method
        },
        "measured_with": "validation scans with expert boxes (tumor-boxes.csv), serving path, true class",
        "command": argv_command,
    }
    write_card(model_dir, card)
    print(f"model card {model_dir}: heatmap_method = {method}")
