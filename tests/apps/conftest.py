"""Fixtures for platform-core tests: two clinics side by side, built with the real services
(the builders are tests/testkit/data.py).

No __init__.py here on purpose: a `tests/apps` package would shadow the project's `apps`.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from clinic_platform.celery import app as celery_app
from tests.testkit.data import ClinicWorld, PublishedTask, make_world


@pytest.fixture
def north(db, django_capture_on_commit_callbacks) -> ClinicWorld:
    return make_world("north", django_capture_on_commit_callbacks)


@pytest.fixture
def south(db, django_capture_on_commit_callbacks) -> ClinicWorld:
    return make_world("south", django_capture_on_commit_callbacks)


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    """Throttle counts (the token endpoint's) live in the cache, local memory in the tests."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    """Each test writes files into its own folder, so leftover (orphan) files can be counted."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def _drain(queue_name: str = "inference") -> list[PublishedTask]:
    published = []
    with celery_app.connection_for_read() as connection:
        # Reading the queue consumes it: never on Redis db 0, where a real stack's scans wait
        # (clinic_platform/test_settings.py moves REDIS_URL to TEST_REDIS_DB).
        uri = connection.as_uri()
        if uri.startswith(("redis", "rediss")) and urlsplit(uri).path in ("", "/", "/0"):
            pytest.fail(f"the tests would consume the shared Redis database {uri}; use test_settings' TEST_REDIS_DB")
        queue = connection.SimpleQueue(queue_name)
        try:
            while True:
                try:
                    # Non-blocking get: `len(queue)` would fail on Redis for an empty (absent) list.
                    message = queue.get(block=False)
                except queue.Empty:
                    break
                published.append(
                    PublishedTask(
                        message.headers["task"], message.payload[0], message.delivery_info.get("routing_key", "")
                    )
                )
                message.ack()
        finally:
            queue.close()
    return published


@pytest.fixture
def broker() -> Iterator[Callable[[], list[PublishedTask]]]:
    """What was published to the "inference" queue: call it to drain and read the messages."""
    _drain()
    yield _drain
    _drain()


@pytest.fixture
def maintenance_broker() -> Iterator[Callable[[], list[PublishedTask]]]:
    """What was published to the "maintenance" queue (the sweep), like `broker`."""

    def drain() -> list[PublishedTask]:
        return _drain("maintenance")

    drain()
    yield drain
    drain()
