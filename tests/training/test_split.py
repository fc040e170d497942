"""The validation split keeps near-duplicates on one side and stays stratified."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mri.vocabulary import CLASS_NAMES
from training.data import (
    NEAR_DUPLICATE_BITS,
    cross_pairs,
    hashes_from_hex,
    load_split,
    near_duplicate_groups,
    split_groups,
)


def test_no_near_duplicate_crosses_the_committed_split() -> None:
    split = load_split()
    train = hashes_from_hex(split["phash"][k] for k in split["train"])
    val = hashes_from_hex(split["phash"][k] for k in split["val"])
    assert cross_pairs(train, val, NEAR_DUPLICATE_BITS) == []


def test_committed_split_is_complete_disjoint_and_stratified() -> None:
    split = load_split()
    train, val = set(split["train"]), set(split["val"])
    assert not train & val
    assert len(train | val) == 5712
    for name in CLASS_NAMES:
        total = sum(k.startswith(name + "/") for k in train | val)
        share = sum(k.startswith(name + "/") for k in val) / total
        assert 0.17 <= share <= 0.23, (name, share)


def test_groups_are_connected_components_of_close_hashes() -> None:
    rng = np.random.default_rng(0)
    base = rng.random((3, 64)) < 0.5
    near = base[0].copy()
    near[:3] ^= True  # 3 bits from scan 0
    chain = near.copy()
    chain[10:13] ^= True  # 3 bits from `near`, 6 from scan 0
    hashes = np.vstack([base, near, chain])
    groups = near_duplicate_groups(hashes, max_bits=4)
    assert groups[0] == groups[3] == groups[4]
    assert len({groups[0], groups[1], groups[2]}) == 3


def test_split_moves_whole_groups() -> None:
    labels = np.repeat([0, 1], 50)
    groups = np.arange(100) // 5
    is_val = split_groups(labels, groups, 0.2, seed=1)
    for group in np.unique(groups):
        assert len(set(is_val[groups == group])) == 1
    assert 5 <= is_val[labels == 0].sum() <= 15


def test_evaluation_sets_may_use_other_folder_names(tmp_path: Path) -> None:
    from training.data import list_samples

    for folder in ("Glioma_Tumor", "meningioma", "no_tumor", "pituitary_tumor"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.jpg").write_bytes(b"")
    assert [s.label for s in list_samples(tmp_path)] == [0, 1, 2, 3]
