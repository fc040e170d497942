"""API tokens (django-rest-knox): stored as a digest only, expiring, and revoked when the
password changes or the user is deactivated. POST /api/auth/token/ keeps its contract."""

import datetime

from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.testkit.data import PASSWORD


def _token(user) -> dict:
    response = APIClient().post(reverse("api:token"), {"username": user.username, "password": PASSWORD})
    assert response.status_code == 200
    return response.json()


def _status(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get(reverse("api:case-list")).status_code


def test_token_is_stored_hashed_and_expires(north, settings):
    body = _token(north.staff)
    token = body["token"]
    (row,) = AuthToken.objects.filter(user=north.staff)
    stored = [str(v) for v in AuthToken.objects.filter(pk=row.pk).values_list().get()]
    assert token not in stored  # only a SHA-512 digest and the public 15-character prefix
    assert row.digest != token
    assert len(row.digest) == 128
    ttl = row.expiry - timezone.now()
    assert datetime.timedelta(hours=9, minutes=59) < ttl <= datetime.timedelta(hours=10)
    assert body["expiry"]
    assert _status(token) == 200
    AuthToken.objects.filter(pk=row.pk).update(expiry=timezone.now() - datetime.timedelta(seconds=1))
    assert _status(token) == 401


def test_password_change_revokes_tokens(north):
    token, other = _token(north.staff)["token"], _token(north.radiologist)["token"]
    north.staff.set_password("a-new-password-42")
    north.staff.save()
    assert _status(token) == 401
    assert _status(other) == 200  # only that user's tokens
    # A login (last_login update) does not revoke.
    fresh = APIClient().post(reverse("api:token"), {"username": north.staff.username, "password": "a-new-password-42"})
    APIClient().login(username=north.staff.username, password="a-new-password-42")
    assert _status(fresh.json()["token"]) == 200


def test_deactivation_in_the_admin_revokes_tokens(north, client):
    token = _token(north.staff)["token"]
    client.force_login(north.admin)
    client.post(
        reverse("admin:accounts_user_changelist"), {"action": "deactivate", "_selected_action": [north.staff.pk]}
    )
    assert _status(token) == 401
    assert not AuthToken.objects.filter(user=north.staff).exists()


def test_bad_token_is_401(north):
    assert _status("0" * 64) == 401
