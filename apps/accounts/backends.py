"""django-axes' lockout check as the first authentication backend."""

from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from django.http import HttpRequest

from .signin_guard import refuse_if_address_backing_off


class LockoutBackend(AxesStandaloneBackend):
    """Refuses a locked-out (username, address) pair, or an address backing off after many
    failures (apps/accounts/signin_guard.py), before any password is checked.

    Every way to sign in over HTTP (/login/, /admin/login/, POST /api/auth/token/) passes
    its request. A call without one has no client to lock out (a management command, the test
    client's `login()`); axes would raise for it, so it is passed on to the next backend."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None,
                     password: str | None = None, **kwargs: Any) -> None:
        if request is None:
            return None
        # The pair's lockout first (its Retry-After is the longer one), then the address's back-off.
        super().authenticate(request, username=username, password=password, **kwargs)
        if refuse_if_address_backing_off(request):
            raise AxesBackendPermissionDenied("This address is backing off after many failed sign-ins.")
        return None
