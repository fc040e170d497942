"""`/healthz` and `/metrics` answered before anything looks at the Host header or the scheme.

The container health probe calls gunicorn directly (`http://127.0.0.1:8000/healthz`) and
Prometheus scrapes each web pod by its address (`http://10.x.y.z:8000/metrics`): with
DJANGO_ALLOWED_HOSTS set to the real host name, or SECURE_SSL_REDIRECT on behind the TLS proxy,
the normal stack would answer them 400 or 301. This middleware comes first in MIDDLEWARE and
answers both itself: the probe says the process is up and reaches its database; the scrape
gets django-prometheus's counters (no patient data; the TLS proxy answers /metrics 404, so
only the cluster network reaches it). Nothing else is exposed.
"""
from __future__ import annotations

from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView

HEALTHZ_PATH = "/healthz"
METRICS_PATH = "/metrics"


class HealthzMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        if request.path_info == HEALTHZ_PATH:
            connection.ensure_connection()
            return HttpResponse("ok", content_type="text/plain")
        if request.path_info == METRICS_PATH:
            return ExportToDjangoView(request)
        return self.get_response(request)
