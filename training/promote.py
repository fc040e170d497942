"""Ship a candidate model only when it earns its place, and keep the card's history.

`python -m training promote --candidate DIR` compares the candidate's calibrated validation
figures (`calibrate` wrote them) with the shipped model's, on the same validation split: the
candidate must be better on accuracy, macro-F1 and ECE together. It must also be complete for
serving: its own out-of-distribution statistics (`ood fit`: they are per model) and heatmap
method (`explain-eval --ship`). Then its files replace the shipped ones and its card carries
the previous card's summary under `history` (every earlier model, oldest first). The decision,
shipped or not, is written to `<candidate>/promotion.json`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from workers.model_store import CARD_NAME, DEFAULT_MODEL_DIR, read_card, verified_weights, write_card

# (metric, which way is better) for the promotion rule
RULE = (("accuracy", "higher"), ("macro_f1", "higher"), ("ece_15", "lower"))
# What an earlier card keeps in the new card's history: enough to say what it was and how good.
SUMMARY_KEYS = (
    "version", "created", "input_size", "preprocessing", "temperature", "recipe", "command",
    "hardware", "train_wall_minutes", "data", "heatmap_method",
)  # fmt: skip


class PromotionRefused(SystemExit):
    """The candidate is not complete, not comparable, or not better."""


def compare(candidate: dict, shipped: dict) -> dict:
    """Per metric: both values and whether the candidate is better (strictly)."""
    rows = {}
    for metric, better in RULE:
        new = float(candidate["validation"]["calibrated"][metric])
        old = float(shipped["validation"]["calibrated"][metric])
        rows[metric] = {"candidate": new, "shipped": old, "better": new > old if better == "higher" else new < old}
    return rows


def card_summary(card: dict) -> dict:
    summary = {key: card[key] for key in SUMMARY_KEYS if key in card}
    validation = card.get("validation") or {}
    summary["validation"] = {"n": validation.get("n"), "calibrated": validation.get("calibrated")}
    if "heatmap_localization" in card:
        localization = card["heatmap_localization"]
        summary["heatmap_localization"] = {k: localization.get(k) for k in ("method", "scans", "pointing")}
    if "ood" in card:
        summary["ood"] = {k: card["ood"].get(k) for k in ("threshold", "fitted_on", "evaluation")}
    return summary


def _same_split(candidate_dir: Path, shipped_dir: Path) -> bool:
    def keys(directory: Path) -> list[str]:
        return json.loads((directory / "split.json").read_text())["val"]

    return keys(candidate_dir) == keys(shipped_dir)


def missing_for_serving(card: dict) -> list[str]:
    """What a card still lacks before it can serve, each with the command that adds it."""
    needs = (
        ("validation", "validation figures (python -m training calibrate --model DIR)"),
        ("ood", "out-of-distribution statistics (python -m training ood fit --model DIR)"),
        ("heatmap_method", "heatmap method (python -m training explain-eval --model DIR --ship M)"),
    )
    return [what for key, what in needs if key not in card]


def promote(candidate_dir: Path, shipped_dir: Path = DEFAULT_MODEL_DIR, dry_run: bool = False) -> dict:
    """Compare, record the decision, and (when better on every metric and complete) replace the
    shipped model."""
    candidate_dir, shipped_dir = Path(candidate_dir), Path(shipped_dir)
    candidate, shipped = read_card(candidate_dir), read_card(shipped_dir)
    verified_weights(candidate_dir, candidate)  # the shards are the ones the card names
    if "validation" not in candidate:
        raise PromotionRefused(f"{candidate_dir} has no {missing_for_serving(candidate)[0]}")
    if not _same_split(candidate_dir, shipped_dir):
        raise PromotionRefused("the candidate was validated on another split than the shipped model: not comparable")
    rows = compare(candidate, shipped)
    better = all(row["better"] for row in rows.values())
    missing = missing_for_serving(candidate)
    if better and missing and not dry_run:
        raise PromotionRefused(f"{candidate_dir} is better but not ready to ship; missing: {'; '.join(missing)}")
    ships = better and not dry_run
    decision = {
        "candidate": candidate["version"],
        "shipped": shipped["version"],
        "rule": "better on validation accuracy, macro-F1 and ECE (calibrated) together",
        "comparison": rows,
        "better": better,
        "missing_for_serving": missing,
        "promoted": ships,
    }
    (candidate_dir / "promotion.json").write_text(json.dumps(decision, indent=2) + "\n")
    if not ships:
        return decision

    candidate["history"] = [*shipped.get("history", []), card_summary(shipped)]
    # The folder becomes the candidate's: nothing of the old model stays beside it (plots,
    # logs and reports describe one model; the old ones are in the card history and in git).
    for old in shipped_dir.iterdir():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    for path in candidate_dir.iterdir():
        if path.is_dir():
            shutil.copytree(path, shipped_dir / path.name)
        elif path.name != CARD_NAME:
            shutil.copy2(path, shipped_dir / path.name)
    write_card(shipped_dir, candidate)
    verified_weights(shipped_dir, candidate)
    return decision
