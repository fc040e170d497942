"""The test data helpers themselves: where the real scans come from, and what happens without them."""

import pytest

from tests.testkit import scans
from training.data import DEFAULT_DATA


def test_scans_come_from_the_training_data_folder_not_a_fixed_path():
    # The one definition (../shared beside the checkout, or BRAIN_MRI_DIR), not a copy of it.
    assert scans.DATASET is DEFAULT_DATA
    assert scans.real_scan_bytes("glioma", 0)[:2] == b"\xff\xd8"  # a JPEG


def test_a_missing_dataset_fails_with_what_to_do_instead_of_skipping(monkeypatch, tmp_path):
    monkeypatch.setattr(scans, "DATASET", tmp_path / "nowhere")
    outcome = None
    try:
        scans.real_scan_bytes("glioma", 0)
    except BaseException as exc:  # pytest's Skipped and Failed are BaseExceptions
        outcome = exc
    assert isinstance(outcome, pytest.fail.Exception), f"expected a failure, got {outcome!r}"
    assert "BRAIN_MRI_DIR" in str(outcome)
