"""Reads of the audit trail, always within the reader's clinic."""

import datetime
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from apps.accounts.models import User

from .models import AuditAction, AuditEvent


@dataclass(frozen=True)
class AuditFilters:
    action: str = ""
    object_type: str = ""
    object_id: str = ""
    actor: str = ""  # username
    since: datetime.datetime | None = None

    @classmethod
    def from_query(cls, query: dict) -> "AuditFilters":
        """Strict parse: a bad value is a ValidationError naming the field (the API's 400)."""
        action = (query.get("action") or "").strip()
        if action and action not in AuditAction.values:
            raise ValidationError({"action": f"Unknown action; one of: {', '.join(AuditAction.values)}."})
        return cls(
            action=action,
            object_type=(query.get("object_type") or "").strip(),
            object_id=(query.get("object_id") or "").strip(),
            actor=(query.get("actor") or "").strip(),
            since=_parse_since((query.get("since") or "").strip()),
        )


def _parse_since(value: str) -> datetime.datetime | None:
    if not value:
        return None
    try:
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            moment = datetime.datetime.combine(day, datetime.time.min) if day else None
    except ValueError:
        moment = None
    if moment is None:
        raise ValidationError({"since": "Use an ISO 8601 date or date-time, e.g. 2026-11-27 or 2026-11-27T10:00:00Z."})
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, datetime.UTC)


def audit_event_list(*, user: User, filters: AuditFilters | None = None) -> QuerySet[AuditEvent]:
    """The events of the user's clinic, newest first."""
    filters = filters or AuditFilters()
    queryset = AuditEvent.objects.filter(clinic_id=user.clinic_id).select_related("actor")
    if filters.action:
        queryset = queryset.filter(action=filters.action)
    if filters.object_type:
        queryset = queryset.filter(object_type=filters.object_type)
    if filters.object_id:
        queryset = queryset.filter(object_id=filters.object_id)
    if filters.actor:
        queryset = queryset.filter(actor_username=filters.actor)
    if filters.since is not None:
        queryset = queryset.filter(at__gte=filters.since)
    return queryset.order_by("-at", "-id")
