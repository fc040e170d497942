"""Suite-wide checks. The tests run the real model on real scans from the shared training set,
so a missing data folder stops the run at once with a message, instead of failing (or
skipping) test by test."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from training.data import DEFAULT_DATA

# `import dicomdata` (the DICOM test builders, tests/dicomdata.py) from every test folder.
sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config: pytest.Config) -> None:
    if not (DEFAULT_DATA / "glioma").is_dir():
        pytest.exit(
            f"The brain MRI training set is not at {DEFAULT_DATA}. The tests use real scans: "
            "check out the repository beside ../shared, or set BRAIN_MRI_DIR to the Training folder.",
            returncode=4,
        )
