"""Password guessing is stopped on every way to sign in (/login/, /admin/login/, POST
/api/auth/token/) by django-axes: locked per username and per client address after
AXES_FAILURE_LIMIT failures, whatever X-Forwarded-For the client sends (it is believed only
behind TRUSTED_PROXY_COUNT proxies). The two-process version, on Redis, is in
tests/e2e/test_login_lockout_processes.py."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.audit.models import AuditAction, AuditEvent, AuditOutcome
from clinic_platform.api import ClientScopedRateThrottle
from tests.testkit.data import PASSWORD

ENDPOINTS = ("login", "admin:login", "api:token")


@pytest.fixture(autouse=True)
def _no_api_throttle(monkeypatch):
    # The per-address throttle (10/min) would answer 429 first; these tests are about axes.
    monkeypatch.setattr(ClientScopedRateThrottle, "THROTTLE_RATES", {"auth-token": "10000/min"})


def _try(endpoint: str, username: str, password: str, remote: str = "10.1.1.1", forwarded: str | None = None):
    headers = {"REMOTE_ADDR": remote}
    if forwarded:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    client = APIClient(**headers)
    data = {"username": username, "password": password}
    if endpoint == "admin:login":
        data["next"] = "/admin/"
    return client.post(reverse(endpoint), data)


def _signed_in(endpoint: str, response) -> bool:
    if endpoint == "api:token":
        return response.status_code == 200 and "token" in response.json()
    return response.status_code == 302 and "_auth_user_id" in response.wsgi_request.session


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_thirty_wrong_passwords_from_thirty_addresses_then_the_right_one_is_refused(endpoint, north):
    user = north.admin  # staff: may also use /admin/login/
    assert _signed_in(endpoint, _try(endpoint, user.username, PASSWORD))  # works before
    for i in range(30):
        response = _try(endpoint, user.username, f"wrong-{i}", forwarded=f"198.51.100.{i}")
        assert not _signed_in(endpoint, response)
    refused = _try(endpoint, user.username, PASSWORD, forwarded="203.0.113.77")
    assert not _signed_in(endpoint, refused)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 15 * 60
    if endpoint == "api:token":
        assert "token" not in refused.json()
        assert "Try again" in str(refused.json())
    else:
        assert "Try again in 15 minutes" in refused.content.decode()
    # Per username: another address is refused too; the other users of the clinic are not.
    assert not _signed_in(endpoint, _try(endpoint, user.username, PASSWORD, remote="10.9.9.9"))
    assert _signed_in("login", _try("login", north.staff.username, PASSWORD, remote="10.9.9.9"))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_one_address_trying_many_usernames_is_locked_out(endpoint, north, south):
    for i in range(5):
        _try(endpoint, f"guess-{i}", "nope", remote="10.2.2.2")
    assert not _signed_in(endpoint, _try(endpoint, south.admin.username, PASSWORD, remote="10.2.2.2"))
    assert _signed_in(endpoint, _try(endpoint, south.admin.username, PASSWORD, remote="10.3.3.3"))


def test_forwarded_address_is_believed_only_behind_a_trusted_proxy(north, south, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    # Behind one trusted proxy, every request comes from the proxy's address; the client is the
    # last X-Forwarded-For entry. Five failures from 198.51.100.1 lock that address only...
    for i in range(5):
        _try("login", f"guess-{i}", "nope", remote="10.0.0.1", forwarded="6.6.6.6, 198.51.100.1")
    assert not _signed_in("login", _try("login", south.staff.username, PASSWORD, "10.0.0.1", "198.51.100.1"))
    assert _signed_in("login", _try("login", south.staff.username, PASSWORD, "10.0.0.1", "198.51.100.2"))
    # ...and rotating the forwarded address still does not unlock a username.
    for i in range(30):
        _try("login", north.staff.username, "nope", remote="10.0.0.1", forwarded=f"192.0.2.{i}")
    assert not _signed_in("login", _try("login", north.staff.username, PASSWORD, "10.0.0.1", "192.0.2.200"))


def test_sign_ins_failures_and_lockouts_are_audited(north, client):
    assert _signed_in("login", _try("login", north.staff.username, PASSWORD, remote="10.4.4.4"))
    for i in range(5):
        _try("login", north.staff.username, f"wrong-{i}", remote="10.4.4.4")
    events = AuditEvent.objects.filter(clinic=north.clinic).order_by("id")
    assert [e.action for e in events.filter(action=AuditAction.LOGIN, actor=north.staff)] == [AuditAction.LOGIN]
    failed = events.filter(action=AuditAction.LOGIN_FAILED)
    assert failed.count() == 5
    assert {(e.actor_username, e.ip, e.outcome) for e in failed} == {
        (north.staff.username, "10.4.4.4", AuditOutcome.FAILURE)
    }
    (lockout,) = events.filter(action=AuditAction.LOCKOUT)
    assert (lockout.actor_username, lockout.ip, lockout.outcome) == (north.staff.username, "10.4.4.4", "failure")
