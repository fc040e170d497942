"""The answer to a locked-out sign-in (django-axes' AXES_LOCKOUT_CALLABLE): 429 with
Retry-After, the sign-in page saying when to try again, or JSON for API clients."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from clinic_platform.errors import json_error

from .services import login_retry_after_seconds


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    if original_response is not None and original_response.status_code == 429:
        return original_response  # the API's token view answered already (DRF, with Retry-After)
    seconds = login_retry_after_seconds(request=request)
    minutes = max(1, round(seconds / 60)) if seconds else None
    if seconds and seconds < 60:  # an address backing off: a short wait
        unit = "second" if seconds == 1 else "seconds"
        message = f"Too many failed sign-ins from this network. Try again in {seconds} {unit}."
    elif minutes:
        message = f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    else:
        message = "Too many failed sign-ins. Ask an administrator to unlock the account."
    if request.path.startswith("/api/"):
        response: HttpResponse = json_error(429, message)  # the API's one error shape
    else:
        response = render(request, "registration/locked_out.html", {"message": message, "minutes": minutes}, status=429)
    if seconds:
        response["Retry-After"] = str(seconds)
    return response
