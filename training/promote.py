"""Ship a candidate model only when it earns its place, and keep the card's history.

`python -m training promote --candidate DIR` compares the candidate with the shipped model on
two splits (issue 16: a model must hold beyond its training data):
- the original validation split (`calibrate` wrote its calibrated figures): non-inferior, i.e.
  accuracy at most 0.2 points below the shipped model's and ECE at most 1 %;
- the external set's validation part (patient groups it never trained on; `evaluate --part val
  --record-card` wrote the card's `sequences` figures): better, i.e. tumour sensitivity no
  lower on any sequence with tumour slices, and higher on at least one;
- where both cards measured it (`explain-eval --ship`), the heatmap's pointing on the boxed
  validation scans at most 1 point below the shipped model's: a model that classifies better
  but points worse costs the radiologist's trust.
It must also be complete for
serving: its own out-of-distribution statistics (`ood fit`: they are per model) and heatmap
method (`explain-eval --ship`). Then its files replace the shipped ones and its card carries
the previous card's summary under `history` (every earlier model, oldest first). The decision,
shipped or not, is written to `<candidate>/promotion.json`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mri.card import CARD_NAME, DEFAULT_MODEL_DIR, ModelCard, read_card, write_card
from mri.model.store import verified_weights

# The original validation split: non-inferiority margins.
ACCURACY_MARGIN = 0.002  # 0.2 points
MAX_ECE = 0.01
POINTING_MARGIN = 0.01  # the heatmap's pointing on the boxed validation scans (3 of 313)
RULE_TEXT = (
    f"original validation split: accuracy within {ACCURACY_MARGIN * 100:.1f} points of the shipped model's and "
    f"ECE ≤ {MAX_ECE:.0%}; external validation part: tumour sensitivity no lower on any sequence, higher on one; "
    f"heatmap pointing on the boxed validation scans within {POINTING_MARGIN * 100:.0f} point of the shipped model's"
)
# What an earlier card keeps in the new card's history: enough to say what it was and how good.
SUMMARY_KEYS = (
    "version", "created", "input_size", "preprocessing", "temperature", "recipe", "command",
    "hardware", "train_wall_minutes", "data", "heatmap_method",
)  # fmt: skip


class PromotionRefused(SystemExit):
    """The candidate is not complete, not comparable, or not better."""


def external_sensitivity(card: dict) -> dict[str, float]:
    """Tumour sensitivity per sequence on the external validation part, from the card's
    `sequences` section (sequences with tumour slices only)."""
    figures = ModelCard.of(card).sequences.get("figures") or {}
    return {
        sequence: float(row["external_validation_part"]["tumour"]["sensitivity"])
        for sequence, row in figures.items()
        if (row.get("external_validation_part") or {}).get("tumour")
    }


def compare(candidate: dict, shipped: dict) -> dict:
    """Per check: both values, the rule, and whether the candidate passes it."""
    new, old = candidate["validation"]["calibrated"], shipped["validation"]["calibrated"]
    rows = {
        "accuracy": {
            "candidate": float(new["accuracy"]),
            "shipped": float(old["accuracy"]),
            "rule": f"≥ shipped − {ACCURACY_MARGIN}",
            "passes": float(new["accuracy"]) >= float(old["accuracy"]) - ACCURACY_MARGIN - 1e-12,
        },
        "ece_15": {
            "candidate": float(new["ece_15"]),
            "shipped": float(old["ece_15"]),
            "rule": f"≤ {MAX_ECE}",
            "passes": float(new["ece_15"]) <= MAX_ECE,
        },
    }
    mine, theirs = external_sensitivity(candidate), external_sensitivity(shipped)
    for sequence in sorted(theirs):
        value = mine.get(sequence, float("nan"))
        rows[f"sensitivity {sequence}"] = {
            "candidate": value,
            "shipped": theirs[sequence],
            "rule": "≥ shipped (external validation part)",
            "passes": value >= theirs[sequence],
        }
    gained = [s for s in theirs if mine.get(s, float("-inf")) > theirs[s]]
    rows["sensitivity higher on a sequence"] = {
        "candidate": len(gained),
        "shipped": 0,
        "rule": "≥ 1 sequence (external validation part)",
        "passes": bool(gained),
    }
    new_pointing, old_pointing = _pointing(candidate), _pointing(shipped)
    if new_pointing is not None and old_pointing is not None:
        rows["heatmap pointing"] = {
            "candidate": new_pointing,
            "shipped": old_pointing,
            "rule": f"≥ shipped − {POINTING_MARGIN} (boxed validation scans)",
            "passes": new_pointing >= old_pointing - POINTING_MARGIN - 1e-12,
        }
    return rows


def _pointing(card: dict) -> float | None:
    value = (card.get("heatmap_localization") or {}).get("pointing")
    return None if value is None else float(value)


def _pointing_basis(card: dict) -> tuple:
    localization = card["heatmap_localization"]
    return localization.get("scans"), localization.get("measured_with"), localization.get("pointing_tolerance_px")


def card_summary(card: dict) -> dict:
    typed = ModelCard.of(card)
    summary = {key: card[key] for key in SUMMARY_KEYS if key in card}
    validation = typed.validation
    summary["validation"] = {"n": validation.get("n"), "calibrated": validation.get("calibrated")}
    if "heatmap_localization" in card:
        localization = card["heatmap_localization"]
        summary["heatmap_localization"] = {k: localization.get(k) for k in ("method", "scans", "pointing")}
    if "ood" in card:
        summary["ood"] = {k: typed.ood.get(k) for k in ("threshold", "fitted_on", "evaluation")}
    if "sequences" in card:
        sequences = typed.sequences
        summary["sequences"] = {
            "validated": sequences.get("validated"),
            "external_tumour_sensitivity": external_sensitivity(card),
            "trained_on_sources": sequences.get("trained_on_sources"),
        }
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


def _external_groups(card: dict) -> list[str] | None:
    return ModelCard.of(card).sequences.get("external_validation_groups")


def promote(candidate_dir: Path, shipped_dir: Path = DEFAULT_MODEL_DIR, dry_run: bool = False) -> dict:
    """Compare, record the decision, and (when it passes on both splits and is complete)
    replace the shipped model."""
    candidate_dir, shipped_dir = Path(candidate_dir), Path(shipped_dir)
    candidate, shipped = read_card(candidate_dir), read_card(shipped_dir)
    verified_weights(candidate_dir, candidate)  # the shards are the ones the card names
    if "validation" not in candidate:
        raise PromotionRefused(f"{candidate_dir} has no {missing_for_serving(candidate)[0]}")
    if not _same_split(candidate_dir, shipped_dir):
        raise PromotionRefused("the candidate was validated on another split than the shipped model: not comparable")
    for card, name in ((candidate, "the candidate"), (shipped, "the shipped model")):
        if not external_sensitivity(card):
            raise PromotionRefused(
                f"{name} has no figures on the external validation part: run `python -m training evaluate "
                "--data <brain-mri-external> --part val --model DIR --record-card`"
            )
    if _external_groups(candidate) != _external_groups(shipped):
        raise PromotionRefused("the candidate was measured on another external validation part: not comparable")
    trained_on = set(ModelCard.of(candidate).sources.get("external_train_groups") or ())
    if leaked := sorted(trained_on & set(_external_groups(candidate) or ())):
        raise PromotionRefused(
            f"the candidate trained on external patient groups it is measured on ({', '.join(leaked)}): "
            "its external figures are not a measurement"
        )
    measured = _pointing(candidate) is not None and _pointing(shipped) is not None
    if measured and _pointing_basis(candidate) != _pointing_basis(shipped):
        raise PromotionRefused(
            "the heatmaps were measured on other scans or boxes than the shipped model's: not comparable "
            "(python -m training explain-eval --model DIR --ship METHOD, on every boxed validation scan)"
        )
    rows = compare(candidate, shipped)
    better = all(row["passes"] for row in rows.values())
    missing = missing_for_serving(candidate)
    if better and missing and not dry_run:
        raise PromotionRefused(f"{candidate_dir} is better but not ready to ship; missing: {'; '.join(missing)}")
    ships = better and not dry_run
    decision = {
        "candidate": candidate["version"],
        "shipped": shipped["version"],
        "rule": RULE_TEXT,
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
