"""`/healthz` answered before anything looks at the Host header or the scheme.

The container health probe calls gunicorn directly (`http://127.0.0.1:8000/healthz`): with
DJANGO_ALLOWED_HOSTS set to the real host name, or SECURE_SSL_REDIRECT on behind the TLS proxy,
the normal stack would answer it 400 or 301. This middleware comes first in MIDDLEWARE and
answers the probe itself: the process is up and reaches its database. Nothing else is exposed.
"""
from __future__ import annotations

from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse

HEALTHZ_PATH = "/healthz"


class HealthzMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == HEALTHZ_PATH and request.method in ("GET", "HEAD"):
            connection.ensure_connection()
            return HttpResponse("ok", content_type="text/plain")
        return self.get_response(request)
