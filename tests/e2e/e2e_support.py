"""Helpers for the end-to-end tests (constants, dataset scans).

A module with its own name, not conftest, so the test files can import it: tests/ has no
__init__.py, so each test folder is on sys.path under pytest's default import mode."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.harness import DATASET

# The first scan in a worker also imports TensorFlow and loads the model (~30 s on 2 cores).
SCAN_TIMEOUT_S = float(os.environ.get("E2E_SCAN_TIMEOUT_S", "300"))


def scan_file(label: str = "glioma", index: int = 0) -> Path:
    """A real scan from the shared training set."""
    folder = DATASET / label
    if not folder.is_dir():
        pytest.fail(f"dataset folder missing: {folder} (set BRAIN_MRI_DIR)")
    return sorted(folder.glob("*.jpg"))[index]
