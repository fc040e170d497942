"""Does averaging the shipped model's logits over test-time views of a slice (a mirror image,
the intensity remaps the training views use) call more outside tumours a tumour without
costing the original validation split? (issue #16; docs/model.md, "Test-time views").

Step 1 (`extract`): the served model's logits for every view of the original validation split
and the external validation part, cached in var/test-time-views/<model version>/.
Step 2 (`score`): for each set of views containing the slice itself, the figures promote reads:
accuracy and per-class recall on the original split, outside tumour slices called a tumour per
sequence, outside tumour-free slices called "No tumour". The gate is not applied (it reads the
slice itself, whatever the views): the figures are the classifier's alone.

    python scripts/test_time_views.py extract
    python scripts/test_time_views.py score
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mri.card import DEFAULT_MODEL_DIR  # noqa: E402
from mri.vocabulary import CLASS_NAMES, NO_TUMOUR  # noqa: E402
from training.augment import remap_head  # noqa: E402
from training.data import DEFAULT_DATA, load_split, samples_from_keys  # noqa: E402
from training.external import EXTERNAL_DATA, load_external_split, rows_for_keys  # noqa: E402

OUT = Path("var/test-time-views")
CHUNK = 32


# Views of the decoded gray slice; "flip" mirrors the model input instead (below).
VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "slice": lambda gray: gray,
    "gamma0.6": lambda gray: remap_head(gray, lambda x: x**0.6),
    "gamma1.6": lambda gray: remap_head(gray, lambda x: x**1.6),
    "invert": lambda gray: remap_head(gray, lambda x: 1.0 - x),
}
ALL_VIEWS = ["slice", "flip", *list(VIEWS)[1:]]


def extract(model_dir: Path) -> None:
    from mri.model.analyzer import Analyzer
    from mri.model.preprocessing import prepare, to_model_input

    analyzer = Analyzer(model_dir)
    split, external = load_split(), load_external_split()
    sets = {
        "original-val": [(s.path, CLASS_NAMES[s.label], "") for s in samples_from_keys(DEFAULT_DATA, split["val"])],
        "external-val": [
            (EXTERNAL_DATA / r.key, r.label, r.sequence) for r in rows_for_keys(EXTERNAL_DATA, external["val"])
        ],
    }
    folder = OUT / analyzer.model_version
    folder.mkdir(parents=True, exist_ok=True)
    for name, items in sets.items():
        logits: dict[str, list[np.ndarray]] = {view: [] for view in ALL_VIEWS}
        for start in range(0, len(items), CHUNK):
            grays = [np.asarray(Image.open(path).convert("L")) for path, _, _ in items[start : start + CHUNK]]
            for view, make in VIEWS.items():
                prepared = [prepare(make(gray), analyzer.input_size, analyzer.head_crop).pixels for gray in grays]
                pixels = to_model_input(np.stack(prepared))
                logits[view].append(analyzer.class_logits(pixels))
                if view == "slice":
                    logits["flip"].append(analyzer.class_logits(pixels[:, :, ::-1].copy()))
            print(f"{name}: {min(start + CHUNK, len(items))} of {len(items)}", flush=True)
        np.savez(
            folder / f"{name}.npz",
            labels=np.array([label for _, label, _ in items]),
            sequences=np.array([sequence for _, _, sequence in items]),
            **{view: np.concatenate(parts) for view, parts in logits.items()},
        )
    print(f"wrote {folder}")


def score(model_dir: Path) -> None:
    from mri.card import read_card

    folder = OUT / read_card(model_dir)["version"]
    original, external = np.load(folder / "original-val.npz"), np.load(folder / "external-val.npz")
    no_tumour = CLASS_NAMES.index(NO_TUMOUR)
    truth = np.array([CLASS_NAMES.index(label) for label in original["labels"]])
    tumour = external["labels"] != NO_TUMOUR
    sequences = external["sequences"]
    print(
        "views | original val: accuracy, recall per class | outside tumours called a tumour: all, "
        "FLAIR / T1 / T2 | outside tumour-free called No tumour: FLAIR / T2 / T1 / T1 post-contrast"
    )
    for size in range(1, len(ALL_VIEWS) + 1):
        for others in itertools.combinations(ALL_VIEWS[1:], size - 1):
            views = ("slice", *others)
            picked = np.mean([original[v] for v in views], axis=0).argmax(1)
            called = np.mean([external[v] for v in views], axis=0).argmax(1) != no_tumour
            recalls = " ".join(f"{(picked[truth == k] == k).mean() * 100:.1f}" for k in range(len(CLASS_NAMES)))
            per_sequence = " / ".join(
                f"{called[tumour & (sequences == s)].mean() * 100:.1f}" for s in ("flair", "t1", "t2")
            )
            free = " / ".join(
                f"{(~called[~tumour & (sequences == s)]).mean() * 100:.1f}" for s in ("flair", "t2", "t1", "t1c")
            )
            print(
                f"{'+'.join(views):32s} | {(picked == truth).mean() * 100:.2f} % ({recalls}) | "
                f"{called[tumour].mean() * 100:.1f} % ({per_sequence}) | {free}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["extract", "score"])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()
    (extract if args.step == "extract" else score)(args.model)


if __name__ == "__main__":
    main()
