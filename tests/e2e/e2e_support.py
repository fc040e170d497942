"""Helpers for the end-to-end tests (constants, dataset scans, worker handles).

A module with its own name, not conftest, so the test files can import it: tests/ has no
__init__.py, so each test folder is on sys.path under pytest's default import mode."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATASET = Path(os.environ.get("BRAIN_MRI_DIR", ROOT.parent / "shared" / "datasets" / "brain-mri" / "Training"))
# The first scan in a worker also imports TensorFlow and loads the model (~30 s on 2 cores).
SCAN_TIMEOUT_S = float(os.environ.get("E2E_SCAN_TIMEOUT_S", "300"))


def scan_file(label: str = "glioma", index: int = 0) -> Path:
    """A real scan from the shared training set."""
    folder = DATASET / label
    if not folder.is_dir():
        pytest.fail(f"dataset folder missing: {folder} (set BRAIN_MRI_DIR)")
    return sorted(folder.glob("*.jpg"))[index]


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Signal the worker's whole process group (main process and pool child)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
