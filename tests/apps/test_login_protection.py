"""Password guessing is stopped on every way to sign in (/login/, /admin/login/, POST
/api/auth/token/): django-axes locks the (username, client address) pair after
AXES_FAILURE_LIMIT failures, and an address with many failures backs off (2, 4, 8 … s),
whatever X-Forwarded-For the client sends (it is believed only behind TRUSTED_PROXY_COUNT
proxies). The two-process version, on Redis, is in tests/e2e/test_login_lockout_processes.py."""

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
def test_nobody_can_lock_a_user_out_from_elsewhere_the_pair_is_locked(endpoint, north):
    """Issue 15 item 8: the (username, address) pair is locked, not the user nor the address
    (this test replaced "thirty wrong passwords ... then the right one is refused", which
    locked the user for everyone: a denial-of-service tool)."""
    user = north.admin  # staff: may also use /admin/login/
    assert _signed_in(endpoint, _try(endpoint, user.username, PASSWORD))  # works before
    # Thirty wrong passwords from thirty addresses: nobody is locked out.
    for i in range(30):
        assert not _signed_in(endpoint, _try(endpoint, user.username, f"wrong-{i}", remote=f"198.51.100.{i}"))
    assert _signed_in(endpoint, _try(endpoint, user.username, PASSWORD, remote="203.0.113.77"))
    # Five from one address lock that pair: refused there even with the right password...
    for i in range(5):
        _try(endpoint, user.username, f"again-{i}", remote="10.1.1.1")
    refused = _try(endpoint, user.username, PASSWORD, remote="10.1.1.1")
    assert not _signed_in(endpoint, refused)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 15 * 60
    if endpoint == "api:token":
        assert "token" not in refused.json()
        assert "Try again" in str(refused.json())
    else:
        assert "Try again in 15 minutes" in refused.content.decode()
    # ...while the user signs in from elsewhere, and the others behind that address (a NAT) too.
    assert _signed_in(endpoint, _try(endpoint, user.username, PASSWORD, remote="10.9.9.9"))
    assert _signed_in("login", _try("login", north.staff.username, PASSWORD, remote="10.1.1.1"))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_one_address_trying_many_usernames_backs_off(endpoint, north, south, settings):
    import time

    free = settings.SIGNIN_ADDRESS_FREE_FAILURES
    for i in range(free):
        _try(endpoint, f"guess-{i}", "nope", remote="10.2.2.2")
    # Within the free failures: no delay (a NAT's users mistyping).
    assert _signed_in(endpoint, _try(endpoint, south.admin.username, PASSWORD, remote="10.2.2.2"))
    _try(endpoint, "guess-x", "nope", remote="10.2.2.2")  # one over: the address waits 2 s
    refused = _try(endpoint, south.admin.username, PASSWORD, remote="10.2.2.2")
    assert refused.status_code == 429
    wait = int(refused["Retry-After"])
    assert 1 <= wait <= 2
    assert "Try again" in (str(refused.json()) if endpoint == "api:token" else refused.content.decode())
    # Other addresses are not affected; the address itself only waits, it is not locked.
    assert _signed_in(endpoint, _try(endpoint, south.admin.username, PASSWORD, remote="10.3.3.3"))
    time.sleep(wait + 0.1)
    assert _signed_in(endpoint, _try(endpoint, south.admin.username, PASSWORD, remote="10.2.2.2"))


def test_the_address_back_off_doubles_with_each_failure(north):
    from apps.accounts.signin_guard import address_backoff_seconds
    from apps.audit.services import audit_record

    def fail() -> None:
        audit_record(actor=None, actor_username="x", action=AuditAction.LOGIN_FAILED, outcome=AuditOutcome.FAILURE,
                     request=APIClient(REMOTE_ADDR="10.8.8.8").get("/healthz").wsgi_request)  # fmt: skip

    from django.conf import settings

    for _ in range(settings.SIGNIN_ADDRESS_FREE_FAILURES):
        fail()
    assert address_backoff_seconds(ip="10.8.8.8") == 0
    waits = []
    for _ in range(4):
        fail()
        waits.append(address_backoff_seconds(ip="10.8.8.8"))
    assert waits == [2, 4, 8, 16]
    for _ in range(20):
        fail()
    assert address_backoff_seconds(ip="10.8.8.8") == 15 * 60  # capped at the cool-off
    assert address_backoff_seconds(ip="10.8.8.9") == 0


def test_forwarded_address_is_believed_only_behind_a_trusted_proxy(north, south, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    # Behind one trusted proxy, every request comes from the proxy's address; the client is the
    # last X-Forwarded-For entry. Five failures from 198.51.100.1 lock that pair only...
    for i in range(5):
        _try("login", south.staff.username, f"nope-{i}", remote="10.0.0.1", forwarded="6.6.6.6, 198.51.100.1")
    assert not _signed_in("login", _try("login", south.staff.username, PASSWORD, "10.0.0.1", "198.51.100.1"))
    assert _signed_in("login", _try("login", south.staff.username, PASSWORD, "10.0.0.1", "198.51.100.2"))
    # ...the proxy's own address is never what is counted: other clients behind it sign in.
    assert _signed_in("login", _try("login", north.staff.username, PASSWORD, "10.0.0.1", "198.51.100.3"))
    failed = AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED).values_list("ip", flat=True)
    assert set(failed) == {"198.51.100.1"}


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
