"""`/healthz` and `/metrics` answered before anything looks at the Host header or the scheme.

The container health probe calls gunicorn directly (`http://127.0.0.1:8000/healthz`) and
Prometheus scrapes each web pod by its address (`http://10.x.y.z:8000/metrics`): with
DJANGO_ALLOWED_HOSTS set to the real host name, or SECURE_SSL_REDIRECT on behind the TLS proxy,
the normal stack would answer them 400 or 301. This middleware comes first in MIDDLEWARE and
answers both itself: the probe says the process is up and reaches its database; the scrape
gets django-prometheus's counters (no patient data; the TLS proxy answers /metrics 404, so
only the cluster network reaches it). Nothing else is exposed.

`/metrics` is answered only to a scraper (`metrics_allowed`): a direct connection from a
private or loopback address with no proxy header (the Kubernetes scrape of the pod address,
the compose network, localhost), or anyone sending `Authorization: Bearer <METRICS_TOKEN>`.
Through a proxy or from a public address it is a 404 in the one error shape.
"""
from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable

from django.conf import settings
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
            if not metrics_allowed(request):
                from clinic_platform.errors import json_error

                return json_error(404, "Not found.")
            return ExportToDjangoView(request)
        return self.get_response(request)


_PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")
# Cluster and compose networks (RFC 1918, CGNAT 100.64/10 some clusters use, IPv6 ULA) and
# loopback. Named here: Python's `is_private` also counts documentation ranges.
_SCRAPER_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "::1/128", "fc00::/7")
)


def metrics_allowed(request: HttpRequest) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    if token:
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
    if any(header in request.META for header in _PROXY_HEADERS):
        return False  # came through a proxy: an outside client, whatever the proxy's address
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if getattr(address, "ipv4_mapped", None):
        address = address.ipv4_mapped
    return any(address in network for network in _SCRAPER_NETWORKS)
