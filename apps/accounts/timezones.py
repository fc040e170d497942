"""The clinic's time zone: every time a person reads (pages, PDF, CSV, admin) is in it, with
its zone named. Times are stored in UTC (USE_TZ); a clinic's zone is an IANA name set in the
admin (Clinic.time_zone). Requests run in the signed-in user's clinic's zone
(`ClinicTimeZoneMiddleware`); code that runs outside a request, or for another clinic (the
PDF, the CSV stream), asks `clinic_zone` itself."""
from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone


@lru_cache(maxsize=1)
def time_zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: str) -> None:
    if value not in time_zone_names():
        raise ValidationError(f"“{value}” is not a time zone name such as Europe/Berlin or America/New_York.")


def clinic_zone(clinic: object | None) -> zoneinfo.ZoneInfo:
    """The clinic's zone; the server's (settings.TIME_ZONE) for no clinic or a bad name."""
    name = getattr(clinic, "time_zone", "") or settings.TIME_ZONE
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


class ClinicTimeZoneMiddleware:
    """Renders each request in the user's clinic's zone (after AuthenticationMiddleware)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        clinic = getattr(user, "clinic", None) if user is not None and user.is_authenticated else None
        timezone.activate(clinic_zone(clinic))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
