"""The external set's split is by patient group: no patient on both sides, every shared
(label, sequence) cell on both sides."""

from __future__ import annotations

import pytest

from training.external import (
    EXTERNAL_DATA,
    ExternalSlice,
    load_external_split,
    read_manifest,
    split_by_patient_group,
)


def _slice(key: str, label: str, sequence: str, group: str) -> ExternalSlice:
    return ExternalSlice(key, label, sequence, group, "test", 0.5, True)


def test_committed_split_keeps_each_patient_group_on_one_side() -> None:
    split = load_external_split()
    train, val = set(split["train"]), set(split["val"])
    assert train
    assert val
    assert not train & val
    groups = split["patient_group"]
    train_groups = {groups[k] for k in train}
    val_groups = {groups[k] for k in val}
    assert not train_groups & val_groups
    assert sorted(train_groups) == split["train_groups"]
    assert sorted(val_groups) == split["val_groups"]


def test_committed_split_has_both_labels_and_several_sequences_on_each_side() -> None:
    split = load_external_split()
    for part in ("train", "val"):
        cells = split["composition"][part]
        assert {cell.split("/")[0] for cell in cells} == {"glioma", "notumor"}
        for label in ("glioma", "notumor"):
            assert len({cell for cell in cells if cell.startswith(label + "/")}) >= 3, (part, label)


@pytest.mark.skipif(not (EXTERNAL_DATA / "manifest.csv").exists(), reason="external data set not present")
def test_committed_split_matches_the_manifest_groups() -> None:
    rows = read_manifest()
    split = load_external_split()
    assert {r.key: r.patient_group for r in rows} == split["patient_group"]
    assert set(split["train"]) | set(split["val"]) == {r.key for r in rows}
    assert split_by_patient_group(rows, split["val_fraction"])["val_groups"] == split["val_groups"]


def test_a_patient_with_many_slices_never_straddles_the_split() -> None:
    rows = [_slice(f"g/{g}-{i}", label, seq, g) for g in "abcdef" for i in range(7) for label, seq in
            (("glioma", "flair"), ("notumor", "t2"))]  # fmt: skip
    split = split_by_patient_group(rows, 0.34)
    val = set(split["val_groups"])
    assert val
    assert val != set("abcdef")
    assert all((r.key in split["val"]) == (r.patient_group in val) for r in rows)
    assert len(val) == 2  # 2 of 6 equal groups is closest to 0.34


def test_a_cell_held_by_two_groups_lands_on_both_sides() -> None:
    # Only groups a and b hold T2 glioma slices; the closest share alone would put both in train.
    rows = [_slice(f"x/{g}{i}", "glioma", "flair", g) for g in "abcdefgh" for i in range(10)]
    rows += [_slice(f"y/{g}", "glioma", "t2", g) for g in "ab"]
    split = split_by_patient_group(rows, 0.1)
    assert len({"a", "b"} & set(split["val_groups"])) == 1


def test_a_split_that_cannot_cover_both_sides_is_refused() -> None:
    rows = [_slice("a/1", "glioma", "flair", "a"), _slice("b/1", "glioma", "flair", "b"),
            _slice("b/2", "notumor", "t2", "b"), _slice("c/1", "notumor", "t2", "c"),
            _slice("c/2", "glioma", "t1", "c"), _slice("a/2", "glioma", "t1", "a")]  # fmt: skip
    # Every pair of groups shares a cell, so some cell always ends up on one side only.
    with pytest.raises(ValueError, match="both sides"):
        split_by_patient_group(rows, 0.5)
