"""One error shape for the whole API: `{"error": {"code", "message", "fields"}}`.

- `code`: a stable machine-readable word (`invalid`, `not_authenticated`, `not_found`,
  `too_large`, `throttled`, `server_error`, ...);
- `message`: one sentence for a person;
- `fields`: `{field name: [messages]}` for invalid input, else `{}`.

Every way an API request can fail answers in it: DRF's exceptions and Django's ValidationError
(`exception_handler`, set in settings/api.py), an unexpected exception inside an API view (500),
URLs that match nothing and errors outside the views (`handler404`/`handler500`... in
clinic_platform/urls.py), the upload limits (clinic_platform/uploads.py) and the media views
when an API client asks (`wants_json`). Pages keep Django's HTML answers.
"""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, serializers
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
}


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def json_error(status_code: int, message: str, *, code: str | None = None, fields=None, headers=None) -> JsonResponse:
    response = JsonResponse(error_body(code or _CODES.get(status_code, "error"), message, fields), status=status_code)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def wants_json(request: HttpRequest) -> bool:
    """An API client: an /api/ URL, a token in `Authorization`, or JSON preferred to HTML."""
    if request.path.startswith("/api/") or request.headers.get("Authorization"):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


# DRF ---------------------------------------------------------------------------------------
def _messages(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [f"{key}: {m}" for key, inner in value.items() for m in _messages(inner)]
    if isinstance(value, list | tuple):
        return [m for item in value for m in _messages(item)]
    return [str(value)]


def _fields(detail: Any) -> tuple[str, dict[str, list[str]]]:
    """A ValidationError's detail as (message, fields)."""
    if not isinstance(detail, dict):
        messages = _messages(detail)
        return " ".join(messages) or "The request is invalid.", {}
    general = _messages(detail.get("non_field_errors", [])) + _messages(detail.get("detail", []))
    fields = {name: _messages(value) for name, value in detail.items() if name not in ("non_field_errors", "detail")}
    message = " ".join(general) or "Some fields are invalid: " + ", ".join(sorted(fields)) + "."
    return message, fields


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse:
    """DRF's EXCEPTION_HANDLER: every exception raised in an API view, in the one shape. Services
    raise Django's ValidationError (400); anything unexpected is logged and answered as a 500."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, RequestDataTooBig):
        return json_error(413, str(exc) or "The request body is too large.")
    if not isinstance(exc, exceptions.APIException):
        view = context.get("view")
        logger.exception("unhandled error in %s", type(view).__name__ if view else "an API view", exc_info=exc)
        return json_error(500, "Something went wrong on our side; the error has been logged.")

    set_rollback()  # as DRF's own handler: an atomic request does not commit half a change
    headers = {}
    if isinstance(exc, exceptions.Throttled) and exc.wait:
        headers["Retry-After"] = "%d" % exc.wait  # as DRF's own handler  # noqa: UP031
    if getattr(exc, "auth_header", None):  # set by APIView for 401s
        headers["WWW-Authenticate"] = exc.auth_header
    if isinstance(exc, exceptions.ValidationError):
        message, fields = _fields(exc.detail)
    else:
        message, fields = " ".join(_messages(exc.detail)), {}
    code = _CODES.get(exc.status_code) or (exc.default_code if isinstance(exc.default_code, str) else "error")
    if isinstance(exc, exceptions.AuthenticationFailed):
        code = "authentication_failed"
    return json_error(exc.status_code, message, code=code, fields=fields, headers=headers)


# Django's own error views (URLs outside DRF views, middleware) ------------------------------
def page_or_json(django_view):
    def view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
        if wants_json(request):
            code = {"bad_request": 400, "permission_denied": 403, "page_not_found": 404, "server_error": 500}
            status_code = code[django_view.__name__]
            messages = {
                400: "The request is invalid.",
                403: "You do not have permission to do this.",
                404: "Not found.",
                500: "Something went wrong on our side; the error has been logged.",
            }
            return json_error(status_code, messages[status_code])
        return django_view(request) if exception is None else django_view(request, exception)

    return view


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. invalid, not_found, throttled.")
    message = serializers.CharField(help_text="One sentence for a person.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per invalid input field; empty for other errors.",
    )


class ErrorSerializer(serializers.Serializer):
    """Every API error, whatever its status."""

    error = ErrorDetailSerializer()


# No debug pages (`make run` runs with DEBUG) ------------------------------------------------
# Under DEBUG, Django answers a 404 with its technical page (the URL patterns, the exception's
# text) instead of handler404. Pages, files and API alike get the one 404 answer instead.
def not_found_response(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    from django.views import defaults

    return page_or_json(defaults.page_not_found)(request, exception or Http404())


class NoDebugNotFoundMiddleware:
    """A 404 raised in a view: the one answer (page_or_json), never the DEBUG technical page."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from django.conf import settings

        if settings.DEBUG and isinstance(exception, Http404):
            return not_found_response(request, exception)
        return None


def _csrf_exempt(view: Any) -> Any:
    from django.views.decorators.csrf import csrf_exempt

    return csrf_exempt(view)


@_csrf_exempt  # it changes nothing: a POST to no URL is a 404, as before this pattern existed
def unmatched_url(request: HttpRequest, path: str = "") -> HttpResponse:
    """The last URL pattern: what matches nothing else. Keeps APPEND_SLASH's redirect (a GET of
    /patients goes to /patients/), else the one 404, also under DEBUG."""
    from django.conf import settings
    from django.http import HttpResponsePermanentRedirect
    from django.urls import Resolver404, resolve

    if settings.APPEND_SLASH and not request.path_info.endswith("/") and request.method in ("GET", "HEAD"):
        try:
            match = resolve(request.path_info + "/")
        except Resolver404:
            match = None
        if match is not None and match.url_name != "unmatched":
            query = request.META.get("QUERY_STRING", "")
            return HttpResponsePermanentRedirect(request.path + "/" + (f"?{query}" if query else ""))
    return not_found_response(request)
