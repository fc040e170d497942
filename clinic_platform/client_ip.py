"""The client's address, the one rule for every consumer: login lockouts (django-axes), the API
throttle (DRF's NUM_PROXIES follows the same setting) and the audit trail.

`X-Forwarded-For` is whatever the client sent plus one address per proxy it passed. It is
believed only when `TRUSTED_PROXY_COUNT` (default 0) proxies of ours are in front: then the
address the first of them saw is the `TRUSTED_PROXY_COUNT`-th from the right. With no trusted
proxy the header is ignored and the TCP peer (REMOTE_ADDR) is the client, so a client cannot
pick a new address per request to slip past a lockout.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _valid(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    remote = _valid(request.META.get("REMOTE_ADDR", "") or "")
    trusted = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
    if trusted <= 0:
        return remote
    forwarded = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if not forwarded:
        return remote
    # Same pick as DRF's throttle with NUM_PROXIES = TRUSTED_PROXY_COUNT.
    return _valid(forwarded[-min(trusted, len(forwarded))]) or remote
