"""django-axes' lockout check as the first authentication backend."""

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LockoutBackend(AxesStandaloneBackend):
    """Refuses a locked-out username or client address before any password is checked.

    Every way to sign in over HTTP (/login/, /admin/login/, POST /api/auth/token/) passes
    its request. A call without one has no client to lock out (a management command, the test
    client's `login()`); axes would raise for it, so it is passed on to the next backend."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None,
                     password: str | None = None, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
