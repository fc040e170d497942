"""Issue 15 item 9: with the shared cache (a real Redis) stopped, /login/ and POST
/api/auth/token/ still sign people in (they answered 500), the lockout still counts, in the
database, and the fallback is logged and counted in a Prometheus metric."""

import logging
from collections.abc import Iterator

import pytest
import redis
from axes.handlers.proxy import AxesProxyHandler
from django.core.cache import caches
from django.urls import reverse
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from apps.accounts.signin_guard import CACHE_FALLBACKS
from tests.testkit.data import PASSWORD
from tests.testkit.processes import PersistentRedis


@pytest.fixture
def redis_cache(tmp_path, settings) -> Iterator[PersistentRedis]:
    server = PersistentRedis(tmp_path / "redis")
    server.start()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
            "KEY_PREFIX": "clinic",
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
        }
    }
    settings.AXES_HANDLER = "apps.accounts.signin_guard.ResilientCacheHandler"
    AxesProxyHandler.get_implementation(force=True)  # its cache is the Redis one now
    try:
        yield server
    finally:
        server.stop()
        caches["default"].close()
    AxesProxyHandler.get_implementation(force=True)


def _fallbacks() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "clinic_signin_cache_fallback"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def _login(username: str, password: str, remote: str = "10.4.0.1"):
    return APIClient(REMOTE_ADDR=remote).post(reverse("login"), {"username": username, "password": password})


def _token(username: str, password: str, remote: str = "10.4.0.1"):
    return APIClient(REMOTE_ADDR=remote).post(reverse("api:token"), {"username": username, "password": password})


def test_sign_in_works_with_redis_stopped_and_the_lockout_falls_back_to_the_database(north, redis_cache, caplog):
    # Redis up: the lockout counts are in Redis.
    assert _login(north.staff.username, "wrong").status_code == 200
    assert redis.Redis.from_url(redis_cache.url).dbsize() > 0
    assert _login(north.staff.username, PASSWORD).status_code == 302

    redis_cache.stop()
    before = _fallbacks()
    with caplog.at_level(logging.WARNING, logger="apps.accounts.signin_guard"):
        page = _login(north.staff.username, PASSWORD)
        assert page.status_code == 302, page.content[:300]
        assert "_auth_user_id" in page.wsgi_request.session
        token = _token(north.staff.username, PASSWORD)
        assert token.status_code == 200, token.content[:300]
        assert "token" in token.json()
    assert _fallbacks() > before
    assert "the cache did not answer" in caplog.text
    steps = {labels["step"] for labels in (s.labels for m in REGISTRY.collect()
             if m.name == "clinic_signin_cache_fallback" for s in m.samples) if labels}  # fmt: skip
    assert {"lockout check", "throttle"} <= steps

    # Password guessing is still stopped, counted in the database while Redis is down.
    for i in range(5):
        assert _login(north.radiologist.username, f"wrong-{i}", remote="10.4.0.2").status_code in (200, 429)
    locked = _login(north.radiologist.username, PASSWORD, remote="10.4.0.2")
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == 15 * 60
    from axes.models import AccessAttempt

    assert AccessAttempt.objects.filter(username=north.radiologist.username, ip_address="10.4.0.2").exists()
    assert _token(north.radiologist.username, PASSWORD, remote="10.4.0.2").status_code == 429
    assert CACHE_FALLBACKS.labels(step="failure count")._value.get() > 0
