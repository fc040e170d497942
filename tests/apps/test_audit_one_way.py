"""Audit events come one way: services write business events, signals only sign-in/out, failed
sign-in and lockout. No event is written twice."""

from django.db.models.signals import post_save

from apps.audit.models import AuditAction, AuditEvent
from apps.scans.models import Scan, ScanReview
from apps.scans.services import scan_review, scans_upload
from tests.testkit.data import upload
from tests.testkit.scans import png_bytes


def _events(action: str, after: int) -> list[tuple[str, str, str]]:
    rows = AuditEvent.objects.filter(id__gt=after, action=action).order_by("id")
    return list(rows.values_list("object_type", "object_id", "detail"))


def _mark() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_one_review_writes_exactly_one_review_event(north):
    mark = _mark()
    scan_review(scan=north.scan, reviewer=north.radiologist, agrees=True)
    assert _events(AuditAction.REVIEW, mark) == [("scan", str(north.scan.pk), "agrees")]


def test_one_upload_writes_one_upload_event_per_scan(north, django_capture_on_commit_callbacks):
    mark = _mark()
    with django_capture_on_commit_callbacks(execute=False):
        scans = scans_upload(
            case=north.case,
            uploaded_by=north.staff,
            uploads=[upload(png_bytes(), "a.png"), upload(png_bytes(), "b.png")],
        ).scans
    assert _events(AuditAction.UPLOAD, mark) == [("scan", str(scan.pk), "") for scan in scans]


def test_no_audit_receiver_listens_to_saved_rows():
    for model in (Scan, ScanReview):
        receivers = post_save._live_receivers(model)
        receivers = receivers[0] if isinstance(receivers, tuple) else receivers  # sync and async (Django 5)
        assert not [r for r in receivers if r.__module__ == "apps.audit.signals"], model
