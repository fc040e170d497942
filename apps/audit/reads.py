"""Audit events for reads: one event per meaningful read, naming what it showed.

- `audit_read(request, obj, shown=...)`: one object (a case page with the scan ids it
  showed, a patient's timeline with its case ids, an admin change page).
- `audit_list_read(request, object_type, ids, what=...)`: one event per page of a list
  (history, worklist, GET /api/cases/ ...), with the ids on that page.
- `covered_by_page_view(user, case_id)`: whether a file or fragment the case page itself
  loads (thumbnails, overlays, the polled scan card and study summary) is part of a case
  view this user had recorded moments ago: then it writes no event of its own (issue 14's
  "~10 downloads per case view"). Fetched on its own, it is recorded as before.
Refused accesses (401/403/404 on a route) are recorded by `AuditRefusalMiddleware`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from django.db import models
from django.http import HttpRequest
from django.utils import timezone

from .models import AuditAction, AuditEvent, AuditOutcome
from .services import audit_record

# How long after a case view the files and fragments its page loads count as part of it.
PAGE_VIEW_COVERS = datetime.timedelta(minutes=30)
_DETAIL_MAX = 255


def ids_text(ids: Iterable[Any]) -> str:
    """Ids as compact runs: [3, 4, 5, 9] → "3-5,9"; cut with "…+N more" to fit an event."""
    numbers = sorted({int(i) for i in ids})
    runs: list[str] = []
    start = previous = None
    for number in [*numbers, None]:
        if start is not None and number == previous + 1:
            previous = number
            continue
        if start is not None:
            runs.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = number
    text = ",".join(runs)
    if len(text) <= _DETAIL_MAX - 40:
        return text
    kept = text[: _DETAIL_MAX - 60].rsplit(",", 1)[0]
    return f"{kept},…+{len(runs) - kept.count(',') - 1} more runs of {len(numbers)} ids"


def audit_read(
    request: HttpRequest, obj: models.Model, *, shown: str = "", ids: Iterable[Any] = (), detail: str = ""
) -> AuditEvent:
    """One object read; `shown`/`ids` name what else the page or answer carried ("scans", ids)."""
    if shown:
        detail = f"{detail + ': ' if detail else ''}{shown} {ids_text(ids) or '-'}"
    return audit_record(actor=request.user, action=AuditAction.VIEW, obj=obj, request=request, detail=detail)


def audit_list_read(request: HttpRequest, object_type: str, ids: Iterable[Any], *, what: str) -> AuditEvent:
    """One page of a list: `what` names the list (and page), the detail carries its ids."""
    page = request.GET.get("page") or request.GET.get("p") or "1"  # "p": the admin's changelist
    return audit_record(
        actor=request.user,
        action=AuditAction.VIEW,
        object_type=object_type,
        request=request,
        detail=f"{what} p{page}: {ids_text(ids) or 'none'}",
    )


def audit_denied(request: HttpRequest, obj: models.Model, *, detail: str) -> AuditEvent:
    """A refusal a page answers with a message instead of a 403 (a role's limit on a form)."""
    return audit_record(
        actor=request.user, action=AuditAction.DENIED, obj=obj, request=request, outcome=AuditOutcome.FAILURE,
        clinic_id=getattr(request.user, "clinic_id", None), detail=detail[:255],
    )  # fmt: skip


def covered_by_page_view(user: Any, case_id: int, scan_id: int | None = None) -> bool:
    """A view of the case (or of this scan's own card) by this user moments ago."""
    if not getattr(user, "is_authenticated", False):
        return False
    shown = models.Q(object_type="case", object_id=str(case_id))
    if scan_id is not None:
        shown |= models.Q(object_type="scan", object_id=str(scan_id))
    return AuditEvent.objects.filter(
        shown,
        actor=user,
        action=AuditAction.VIEW,
        outcome=AuditOutcome.SUCCESS,
        at__gte=timezone.now() - PAGE_VIEW_COVERS,
    ).exists()
