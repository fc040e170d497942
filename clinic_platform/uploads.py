"""Limits on request bodies, enforced before and while a body is read, never after.

`RequestLimitMiddleware` (after AuthenticationMiddleware, so before any view or the CSRF check
reads the body):
- refuses a body whose declared length is over the limit (413) without reading it: a client
  that is not signed in (no session, no valid API token) gets Django's in-memory form limit
  (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB), so nothing it sends is ever spooled to disk, and its
  file bodies of unknown length (chunked) are refused outright;
- parses an accepted multipart body itself, so that the streaming limits below answer with a
  413 in the one error shape instead of an exception in whichever code touched `request.POST`.

`StreamLimitUploadHandler` (first of FILE_UPLOAD_HANDLERS) counts bytes as they stream in and
stops the request at the first chunk past `MAX_UPLOAD_BYTES` for one file (a zip:
`DICOM_ZIP_MAX_BYTES`) or
`UPLOAD_MAX_REQUEST_BYTES` for the whole body (chunked bodies have no declared length).
Nothing past the limit is read, held or written to a temporary file.
"""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, HttpResponse

from clinic_platform.errors import json_error, wants_json
from mri.intake.limits import MAX_UPLOAD_BYTES

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class UploadTooLarge(RequestDataTooBig):
    """A body past the limits; the message is fit to show a user."""


def _mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB"


class StreamLimitUploadHandler(FileUploadHandler):
    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None) -> None:
        # Set by RequestLimitMiddleware from who is asking; the anonymous limit otherwise.
        self.limit = getattr(self.request, "upload_limit", settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        self.total = 0
        if content_length and content_length > self.limit:
            raise UploadTooLarge(f"The request is {_mb(content_length)}; the limit is {_mb(self.limit)}.")

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.file_bytes = 0
        self.file_limit = MAX_UPLOAD_BYTES

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start == 0 and raw_data[:4] in _ZIP_MAGIC:  # a zipped DICOM study has its own, larger cap
            self.file_limit = settings.DICOM_ZIP_MAX_BYTES
        self.file_bytes += len(raw_data)
        self.total += len(raw_data)
        if self.file_bytes > self.file_limit:
            kind = "one zipped study" if self.file_limit != MAX_UPLOAD_BYTES else "one scan"
            self._stop(f"{self.file_name}: the file is larger than {_mb(self.file_limit)}, the limit for {kind}.")
        if self.total > self.limit:
            self._stop(f"The files together are larger than {_mb(self.limit)}, the limit for one request.")
        return raw_data  # passed on to the next handler (memory or temporary file)

    def _stop(self, message: str) -> None:
        """Stop reading now. StopUpload makes Django's parser close (and so delete) the
        temporary files written so far and leave the rest of the body unread; the middleware
        answers 413 with the message."""
        self.request.upload_refused = message
        raise StopUpload(connection_reset=True)

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler builds the file


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _token_user_is_valid(request: HttpRequest) -> bool:
    """Whether `Authorization` carries a valid API token, checked with the API's own
    authentication classes (headers only: the body is not touched)."""
    if not request.headers.get("Authorization"):
        return False
    from rest_framework.authentication import SessionAuthentication
    from rest_framework.exceptions import APIException
    from rest_framework.request import Request
    from rest_framework.settings import api_settings

    drf_request = Request(request)
    for auth_class in api_settings.DEFAULT_AUTHENTICATION_CLASSES:
        if issubclass(auth_class, SessionAuthentication):
            continue
        try:
            result = auth_class().authenticate(drf_request)
        except APIException:
            return False
        if result is not None:
            return True
    return False


def upload_allowed(request: HttpRequest) -> HttpResponse:
    """For the TLS proxy's auth_request (deploy/nginx): may this client send an upload-sized
    body? 204 when signed in or with a valid API token, else 401 in the one error shape. Reads
    headers only; the proxy asks before it reads (and so spools) any byte of the body."""
    if request.user.is_authenticated or _token_user_is_valid(request):
        return HttpResponse(status=204)
    return json_error(401, "Sign in (or send a valid API token) to upload scans.")


class RequestLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in ("POST", "PUT", "PATCH"):
            refused = self._refuse(request)
            if refused is not None:
                return refused
        return self.get_response(request)

    def _refuse(self, request: HttpRequest) -> HttpResponse | None:
        length = _declared_length(request)
        multipart = request.content_type == "multipart/form-data"
        signed_in = request.user.is_authenticated or _token_user_is_valid(request)
        # Anonymous clients (the login form, the token endpoint) never need more than Django's
        # in-memory form limit: nothing of theirs is ever spooled to a temporary file.
        limit = settings.UPLOAD_MAX_REQUEST_BYTES if signed_in else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request.upload_limit = limit  # read by StreamLimitUploadHandler
        if length > limit:
            return self._too_large(
                request,
                f"The request is {_mb(length)}; the limit is {_mb(limit)}"
                + ("." if signed_in else " without signing in. Sign in (or send a valid API token) to upload scans."),
            )
        if multipart and not signed_in and not length:
            return self._too_large(request, "Sign in (or send a valid API token) to upload scans.")
        if multipart:
            try:
                request.POST  # noqa: B018 (parse now, under StreamLimitUploadHandler's limits)
            except UploadTooLarge as exc:
                return self._too_large(request, str(exc))
            refused = getattr(request, "upload_refused", None)
            if refused:
                return self._too_large(request, refused)
        return None

    @staticmethod
    def _too_large(request: HttpRequest, message: str) -> HttpResponse:
        if wants_json(request):
            return json_error(413, message)
        # A person at a form: the site's own page, the reason, and the way back to the form
        # (the page they came from, when it is one of ours).
        from django.shortcuts import render
        from django.utils.http import url_has_allowed_host_and_scheme

        back = request.headers.get("Referer", "")
        if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
            back = "/"
        return render(request, "413.html", {"message": message, "back": back}, status=413)
