"""Nothing is lost by a click: cases are soft-deleted (refused while a scan is being
analysed), hidden everywhere, restorable, and only the retention purge (a beat task on the
maintenance queue) removes rows and files. Users are deactivated, never deleted."""

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.services import user_deactivate
from apps.cases.models import Case
from apps.cases.services import case_restore, case_soft_delete
from apps.patients.selectors import patient_list
from apps.scans.models import Scan, ScanStatus
from apps.scans.services import scans_upload
from tests.testkit.data import PASSWORD, api_token, stored_files, upload
from tests.testkit.scans import png_bytes
from workers.tasks import purge_deleted_cases


def _age(case: Case, days: float) -> None:
    Case.all_objects.filter(pk=case.pk).update(deleted_at=timezone.now() - datetime.timedelta(days=days))


def _pending_scan(world, capture, status=ScanStatus.QUEUED) -> Scan:
    with capture(execute=False):
        (scan,) = scans_upload(case=world.case, uploaded_by=world.staff, uploads=[upload(png_bytes())]).scans
    Scan.objects.filter(pk=scan.pk).update(status=status)
    return scan


@pytest.mark.parametrize("status", [ScanStatus.QUEUED, ScanStatus.PROCESSING])
def test_delete_is_refused_while_a_scan_is_being_analysed(north, status, django_capture_on_commit_callbacks):
    _pending_scan(north, django_capture_on_commit_callbacks, status)
    with pytest.raises(ValidationError, match="still being analysed"):
        case_soft_delete(case=north.case, by=north.admin)
    assert Case.objects.filter(pk=north.case.pk).exists()


def test_a_deleted_case_is_gone_everywhere_but_its_files_stay_until_the_purge(north, client, media_root):
    files_before = stored_files(media_root)
    assert len(files_before) == 3  # scan, heatmap, overlay
    case_soft_delete(case=north.case, by=north.admin)
    client.force_login(north.staff)
    for url in (
        reverse("case_detail", args=[north.case.pk]),
        reverse("case_summary", args=[north.case.pk]),
        reverse("scan_card", args=[north.scan.pk]),
        reverse("scans:image", args=[north.scan.pk]),
        reverse("scans:overlay", args=[north.scan.pk]),
    ):
        assert client.get(url).status_code == 404, url
    assert north.case.title not in client.get(reverse("history")).content.decode()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(north.staff)}")
    assert api.get(reverse("api:case-detail", args=[north.case.pk])).status_code == 404
    assert api.get(reverse("api:scan-detail", args=[north.scan.pk])).status_code == 404
    assert api.get(reverse("api:case-list")).json()["count"] == 0
    assert patient_list(user=north.staff).get(pk=north.patient.pk).case_count == 0
    assert stored_files(media_root) == files_before

    case_restore(case=north.case, by=north.admin)
    assert client.get(reverse("case_detail", args=[north.case.pk])).status_code == 200
    assert client.get(reverse("scans:image", args=[north.scan.pk])).status_code == 200


def test_purge_removes_only_cases_past_retention_with_their_files(
    north, south, settings, media_root, django_capture_on_commit_callbacks
):
    settings.CASE_RETENTION_DAYS = 30
    case_soft_delete(case=north.case, by=north.admin)
    case_soft_delete(case=south.case, by=south.admin)
    _age(north.case, 31)
    _age(south.case, 29)  # still restorable
    north_files = [north.scan.image.name, north.scan.prediction.heatmap.name, north.scan.prediction.overlay.name]
    with django_capture_on_commit_callbacks(execute=True):
        assert purge_deleted_cases() == {"purged": 1}
    assert not Case.all_objects.filter(pk=north.case.pk).exists()
    assert not Scan.objects.filter(pk=north.scan.pk).exists()
    remaining = {p.relative_to(media_root).as_posix() for p in stored_files(media_root)}
    assert not remaining & set(north_files)
    assert south.scan.image.name in remaining
    assert Case.all_objects.filter(pk=south.case.pk).exists()
    # Idempotent: a second run (a duplicate beat message) finds nothing to do.
    assert purge_deleted_cases() == {"purged": 0}


def test_purge_is_a_beat_task_on_the_maintenance_queue(settings, maintenance_broker):
    entry = settings.CELERY_BEAT_SCHEDULE["purge-deleted-cases"]
    assert entry["task"] == "workers.tasks.purge_deleted_cases"
    assert entry["schedule"] == settings.CASE_PURGE_INTERVAL_SECONDS
    purge_deleted_cases.delay()
    assert [t.task for t in maintenance_broker()] == ["workers.tasks.purge_deleted_cases"]


def test_clinic_admin_deletes_and_restores_in_the_admin_and_a_superuser_delete_is_soft(
    north, client, django_user_model, media_root
):
    client.force_login(north.admin)
    changelist = reverse("admin:cases_case_changelist")
    client.post(changelist, {"action": "soft_delete", "_selected_action": [north.case.pk]})
    assert Case.all_objects.get(pk=north.case.pk).deleted_by == north.admin
    trash = client.get(changelist, {"deleted": "yes"})
    assert [c.pk for c in trash.context["cl"].queryset] == [north.case.pk]
    client.post(changelist, {"action": "restore", "_selected_action": [north.case.pk]})
    assert Case.objects.filter(pk=north.case.pk).exists()

    root = django_user_model.objects.create_superuser("root", "root@example.org", "root-pass-123")
    client.force_login(root)
    files = stored_files(media_root)
    response = client.post(reverse("admin:cases_case_delete", args=[north.case.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert Case.all_objects.get(pk=north.case.pk).deleted_at is not None
    assert stored_files(media_root) == files



def test_a_superuser_delete_is_refused_too_while_analysing(
    north, client, django_user_model, django_capture_on_commit_callbacks
):
    _pending_scan(north, django_capture_on_commit_callbacks, ScanStatus.PROCESSING)
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.org", "root-pass-123"))
    response = client.post(reverse("admin:cases_case_delete", args=[north.case.pk]), {"post": "yes"}, follow=True)
    assert "still being analysed" in response.content.decode()
    assert Case.objects.filter(pk=north.case.pk).exists()


def test_users_are_deactivated_not_deleted(north, client):
    with pytest.raises(ProtectedError):
        north.staff.delete()  # created the patient and case, uploaded the scan
    client.force_login(north.admin)
    assert client.get(reverse("admin:accounts_user_delete", args=[north.staff.pk])).status_code == 403
    token = api_token(north.staff)
    user_deactivate(user=north.staff, by=north.admin)
    north.staff.refresh_from_db()
    assert not north.staff.is_active
    assert north.case.created_by_id == north.staff.pk
    client.logout()
    assert not client.login(username=north.staff.username, password=PASSWORD)
    response = client.post(reverse("login"), {"username": north.staff.username, "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    assert response.status_code == 200
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get(reverse("api:case-list")).status_code == 401
