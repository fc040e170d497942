"""Shared by the deployment checks (compose files, Kubernetes manifests)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def settings_env_names() -> set[str]:
    """Environment variables the settings read: env.str("X"), env.db("X"), os.environ["X"]..."""
    pattern = re.compile(r"""(?:env(?:\.\w+)?\(|environ(?:\.get)?[\[(])\s*["']([A-Z][A-Z0-9_]*)["']""")
    names: set[str] = set()
    for path in [*(ROOT / "clinic_platform" / "settings").glob("*.py"), ROOT / "clinic_platform" / "celery.py"]:
        names.update(pattern.findall(path.read_text()))
    assert {"DATABASE_URL", "REDIS_URL"} <= names, "the settings no longer read these: update this test"
    return names
