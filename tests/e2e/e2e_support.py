"""Helpers for the end-to-end tests (constants, dataset scans).

A module with its own name, not conftest, so the test files can import it: tests/ has no
__init__.py, so each test folder is on sys.path under pytest's default import mode."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from bench.harness import DATASET, S3Server

# The first scan in a worker also imports TensorFlow and loads the model (~30 s on 2 cores).
SCAN_TIMEOUT_S = float(os.environ.get("E2E_SCAN_TIMEOUT_S", "300"))


def scan_file(label: str = "glioma", index: int = 0) -> Path:
    """A real scan from the shared training set."""
    folder = DATASET / label
    if not folder.is_dir():
        pytest.fail(f"dataset folder missing: {folder} (set BRAIN_MRI_DIR)")
    return sorted(folder.glob("*.jpg"))[index]


@dataclass(frozen=True)
class MediaStore:
    """Where this run's scans, heatmaps and overlays go: "local" (MEDIA_ROOT) or "s3"."""

    kind: str
    root: Path
    s3: S3Server | None = None
    prefix: str = ""

    def env(self) -> dict[str, str]:
        """What a worker process needs to use the same storage."""
        if self.s3 is None:
            return {"MEDIA_ROOT": str(self.root)}
        return {**self.s3.env(), "S3_PREFIX": self.prefix, "MEDIA_ROOT": str(self.root)}

    def names(self) -> set[str]:
        """Every stored file's name, as the database rows hold it."""
        if self.s3 is None:
            return {p.relative_to(self.root).as_posix() for p in self.local_files()}
        return {key.removeprefix(self.prefix + "/") for key in self.s3.keys(self.prefix + "/")}

    def local_files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else []


API_PASSWORD = "e2e-api-password"


def wait_for_scan(session: requests.Session, url: str, timeout: float = SCAN_TIMEOUT_S) -> dict:
    """Poll the scan until it is done or failed."""
    deadline = time.monotonic() + timeout
    while True:
        body = session.get(url, timeout=10).json()
        if body["status"] in ("done", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(1)
