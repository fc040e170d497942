"""Fixtures for the page tests (builders: tests/testkit/data.py). The scans stay queued, so a
test can finish them with the result it needs."""
from __future__ import annotations

import pytest

from tests.testkit.data import ClinicWorld, make_world


@pytest.fixture
def world(db, django_capture_on_commit_callbacks) -> ClinicWorld:
    return make_world("north", django_capture_on_commit_callbacks, finished=False)


@pytest.fixture
def other(db, django_capture_on_commit_callbacks) -> ClinicWorld:
    return make_world("south", django_capture_on_commit_callbacks, finished=False)


@pytest.fixture
def staff_client(client, world):
    client.force_login(world.staff)
    return client


@pytest.fixture
def rad_client(client, world):
    client.force_login(world.radiologist)
    return client
