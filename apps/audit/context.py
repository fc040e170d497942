"""`AuditRequestMiddleware`: holds the request being served for the audit services
(apps/audit/request.py) and records every refused access (401/403/404 on a route of ours) as
one "denied" event."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .models import AuditAction, AuditOutcome
from .request import REQUEST
from .services import audit_record, object_type_of_label

REFUSED_STATUSES = frozenset({401, 403, 404})
# The URL argument that names the object asked for → the object type written in events.
_KWARG_TYPES = {"case_id": "case", "scan_id": "scan", "patient_id": "patient"}


class AuditRequestMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = REQUEST.set(request)
        try:
            response = self.get_response(request)
            if response.status_code in REFUSED_STATUSES:
                _record_refusal(request, response.status_code)
            return response
        finally:
            REQUEST.reset(token)


def _refused_object(request: HttpRequest) -> tuple[str, str]:
    match = request.resolver_match
    for name, object_type in _KWARG_TYPES.items():
        if name in match.kwargs:
            return object_type, str(match.kwargs[name])
    if match.namespace == "admin" and "object_id" in match.kwargs:
        app_model = match.url_name.rsplit("_", 1)[0]  # "cases_case_change" → "cases_case"
        return object_type_of_label(app_model.replace("_", ".", 1)), str(match.kwargs["object_id"])[:64]
    return "", ""


def _record_refusal(request: HttpRequest, status: int) -> None:
    # Only routes of ours: a scanner's unknown URL is not an access to anything.
    match = request.resolver_match
    if match is None or match.url_name == "unmatched" or getattr(request, "audit_failure_recorded", False):
        return
    object_type, object_id = _refused_object(request)
    user = getattr(request, "user", None)
    audit_record(
        actor=user,
        action=AuditAction.DENIED,
        request=request,
        outcome=AuditOutcome.FAILURE,
        object_type=object_type,
        object_id=object_id,
        # The actor's own clinic: another clinic's trail never learns who probed it.
        clinic_id=getattr(user, "clinic_id", None) if getattr(user, "is_authenticated", False) else None,
        detail=f"{status} {request.method} {request.resolver_match.view_name}",
    )
