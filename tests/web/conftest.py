"""Fixtures for the page tests; the helpers they use live in page_support.py."""
from __future__ import annotations

import pytest
from page_support import ClinicWorld, make_world


@pytest.fixture
def world(db, django_capture_on_commit_callbacks) -> ClinicWorld:
    return make_world("north", django_capture_on_commit_callbacks)


@pytest.fixture
def other(db, django_capture_on_commit_callbacks) -> ClinicWorld:
    return make_world("south", django_capture_on_commit_callbacks)
