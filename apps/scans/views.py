"""Scan images, overlays, heatmaps and de-identified DICOM files, served only to members of the scan's clinic.

Files are never reachable through MEDIA_URL; these views look the scan up through the
clinic-scoped selector, so another clinic's file is a 404 like a missing one.
"""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.files import File
from django.core.files.storage import FileSystemStorage
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from knox.auth import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from apps.audit.models import AuditAction
from apps.audit.reads import covered_by_page_view
from apps.audit.services import audit_record
from clinic_platform.errors import json_error, wants_json

from .media import is_missing_object
from .selectors import scan_get

# A DICOM scan's `image` is its PNG rendering; the de-identified file itself is `dicom`.
_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "DICOM": "image/png"}


def _authenticate(request: HttpRequest) -> bool:
    """Session (pages) or `Authorization: Token …` (API clients following image_url; knox
    tokens, expiring and stored hashed)."""
    if request.user.is_authenticated:
        return True
    try:
        result = TokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return False
    if result is None:
        return False
    request.user = result[0]
    return True


def _open(field: FieldFile) -> File:
    """The stored file, opened through the storage API (local disk or S3 alike); Http404 when
    it is missing. Streamed through this view by default rather than redirected to the bucket:
    the clinic check and `no-store` then hold for every byte, and browsers never need to reach
    the object store (docs/operations.md, "Object storage": the measurement behind the choice,
    and MEDIA_PRESIGNED_REDIRECT for the other way)."""
    if not field:
        raise Http404("The file is missing.")
    try:
        handle = field.open("rb")
        # S3: fetch it now (one GET), so a missing object is a 404 before any byte is sent.
        handle.file  # noqa: B018
    except ValueError:
        raise Http404("The file is missing.") from None
    except Exception as exc:
        if is_missing_object(exc):
            raise Http404("The file is missing.") from None
        raise
    return handle


def _serve(request: HttpRequest, scan_id: int, kind: str) -> HttpResponse:
    try:
        return _serve_file(request, scan_id, kind)
    except Http404 as exc:
        # A file: the one JSON error shape for everyone (an <img> shows nothing either way),
        # never an HTML page, nor DEBUG's technical page under `make run`.
        return json_error(404, str(exc) or "Not found.")


def _serve_file(request: HttpRequest, scan_id: int, kind: str) -> HttpResponse:
    if not _authenticate(request):
        if wants_json(request):  # a token client gets a 401 it can act on, not a login page
            return json_error(
                401, "Sign in, or send a valid token: Authorization: Token <key>.",
                headers={"WWW-Authenticate": 'Token realm="api"'},
            )  # fmt: skip
        return redirect_to_login(request.get_full_path())
    scan = scan_get(user=request.user, scan_id=scan_id)
    if kind == "image":
        field, content_type = scan.image, _CONTENT_TYPES.get(scan.format, "application/octet-stream")
    elif kind == "dicom":
        if not scan.dicom:
            raise Http404("This scan was not uploaded as DICOM.")
        field, content_type = scan.dicom, "application/dicom"
    else:
        prediction = getattr(scan, "prediction", None)
        if prediction is None:
            raise Http404("This scan has not been analysed yet.")
        field, content_type = getattr(prediction, kind), "image/png"
    # The case page's own images are part of its view event; the DICOM file is a download.
    audited = kind == "dicom" or not covered_by_page_view(request.user, scan.case_id, scan.pk)
    if settings.MEDIA_PRESIGNED_REDIRECT and not isinstance(field.storage, FileSystemStorage):
        # After the same clinic check: a signed URL valid for S3 querystring_expire (30 s).
        if audited:
            audit_record(actor=request.user, action=AuditAction.DOWNLOAD, obj=scan, request=request, detail=kind)
        response = HttpResponseRedirect(field.url)
        response["Referrer-Policy"] = "no-referrer"
        return response
    handle = _open(field)
    if audited:
        audit_record(actor=request.user, action=AuditAction.DOWNLOAD, obj=scan, request=request, detail=kind)
    response = FileResponse(handle, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    return response


SCAN_FILES = ("image", "overlay", "heatmap", "dicom")  # the `kind`s, one URL each (urls.py)


# No copy anywhere: not in a shared cache, and not in the browser's own cache either, where a
# patient's scan would outlive the session on a shared ward PC (`never_cache`: no-store, private).
@require_GET
@never_cache
def scan_file(request: HttpRequest, scan_id: int, kind: str) -> HttpResponse:
    """A scan's file of one kind (SCAN_FILES). The DICOM one is the de-identified file, a
    download (the uploaded bytes are deleted once unpacked)."""
    response = _serve(request, scan_id, kind)
    if kind == "dicom":
        response["Content-Disposition"] = f'attachment; filename="scan-{scan_id}.dcm"'
    return response
