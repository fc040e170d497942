"""Suite-wide checks. The tests run the real model on real scans from the shared training set,
so a missing data folder stops the run at once with a message, instead of failing (or
skipping) test by test."""
from __future__ import annotations

import pytest

from training.data import DEFAULT_DATA


def pytest_configure(config: pytest.Config) -> None:
    if not (DEFAULT_DATA / "glioma").is_dir():
        pytest.exit(
            f"The brain MRI training set is not at {DEFAULT_DATA}. The tests use real scans: "
            "check out the repository beside ../shared, or set BRAIN_MRI_DIR to the Training folder.",
            returncode=4,
        )
