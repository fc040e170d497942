"""The audit trail's contract: each action writes exactly its event (actor, clinic, action,
object, client address, outcome), nobody can change or delete an event, and a clinic admin
reads only their own clinic's events (admin, CSV, API)."""

import csv
import datetime
import io

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AppendOnlyError, AuditEvent
from apps.audit.services import audit_record
from apps.cases.services import case_restore, case_soft_delete, cases_purge_deleted
from tests.testkit.data import PASSWORD, api_token, upload
from tests.testkit.scans import png_bytes


def _events_after(last_id: int) -> list[tuple]:
    return [
        (e.action, e.object_type, e.object_id, e.actor_username, e.outcome, e.detail)
        for e in AuditEvent.objects.filter(id__gt=last_id).order_by("id")
    ]


def _mark() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _api(user) -> APIClient:
    client = APIClient(REMOTE_ADDR="10.5.5.5")
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def test_sign_in_sign_out_and_failed_sign_in(north, client):
    mark = _mark()
    client.post(reverse("login"), {"username": north.staff.username, "password": PASSWORD})
    user_id = str(north.staff.pk)
    assert _events_after(mark) == [("login", "user", user_id, "north-staff", "success", "")]
    mark = _mark()
    client.post(reverse("logout"))
    assert _events_after(mark) == [("logout", "user", user_id, "north-staff", "success", "")]
    mark = _mark()
    client.post(reverse("login"), {"username": north.staff.username, "password": "wrong"})
    assert _events_after(mark) == [("login_failed", "", "", "north-staff", "failure", "")]
    assert AuditEvent.objects.get(id__gt=mark).clinic_id == north.clinic.pk  # their admin sees it


def test_lockout_writes_one_lockout_event(north, client):
    for i in range(4):
        client.post(reverse("login"), {"username": north.staff.username, "password": f"wrong-{i}"})
    mark = _mark()
    client.post(reverse("login"), {"username": north.staff.username, "password": "wrong-5"})
    # axes sends its lockout signal while handling the failure, so the lockout row comes first.
    assert sorted(_events_after(mark)) == [
        ("lockout", "", "", "north-staff", "failure", ""),
        ("login_failed", "", "", "north-staff", "failure", ""),
    ]


def test_api_token_creation(north):
    mark = _mark()
    response = APIClient(REMOTE_ADDR="10.6.6.6").post(
        reverse("api:token"), {"username": north.staff.username, "password": PASSWORD}
    )
    assert response.status_code == 200
    ((action, object_type, object_id, actor, outcome, _),) = _events_after(mark)
    assert (action, object_type, actor, outcome) == ("token_create", "token", "north-staff", "success")
    assert response.json()["token"].startswith(object_id)  # the key's public prefix, never the token
    assert AuditEvent.objects.get(id__gt=mark).ip == "10.6.6.6"


def test_page_and_api_views(north, client):
    client.force_login(north.staff)
    mark = _mark()
    assert client.get(reverse("case_detail", args=[north.case.pk])).status_code == 200
    # Issue 15: a view names what it showed (the case's scans, the list page's ids).
    scans = f"scans {north.scan.pk}"
    assert _events_after(mark) == [("view", "case", str(north.case.pk), "north-staff", "success", scans)]
    mark = _mark()
    assert client.get(reverse("patients")).status_code == 200
    listed = f"list p1: {north.patient.pk}"
    assert _events_after(mark) == [("view", "patient", "", "north-staff", "success", listed)]
    api = _api(north.staff)
    mark = _mark()
    assert api.get(reverse("api:patient-list")).status_code == 200
    assert _events_after(mark) == [("view", "patient", "", "north-staff", "success", listed)]
    for name, obj, detail in (
        ("api:patient-detail", north.patient, ""),
        ("api:case-detail", north.case, scans),
        ("api:scan-detail", north.scan, ""),
        ("api:case-scans", north.case, scans),
        ("api:case-studies", north.case, "studies -"),  # progress only: no scan shown
    ):
        kind = type(obj).__name__.lower()
        mark = _mark()
        assert api.get(reverse(name, args=[obj.pk])).status_code == 200
        assert _events_after(mark) == [("view", kind, str(obj.pk), "north-staff", "success", detail)], name
    assert AuditEvent.objects.latest("id").ip == "10.5.5.5"


def test_every_media_download(north, client):
    client.force_login(north.staff)
    for kind in ("image", "overlay", "heatmap"):
        mark = _mark()
        response = client.get(reverse(f"scans:{kind}", args=[north.scan.pk]))
        assert response.status_code == 200
        assert _events_after(mark) == [("download", "scan", str(north.scan.pk), "north-staff", "success", kind)]


def test_another_clinics_view_writes_nothing_for_that_clinic(north, south, client):
    # Issue 15: the refusal is recorded, in the prober's own clinic's trail, never north's.
    client.force_login(south.staff)
    mark = _mark()
    assert client.get(reverse("scans:image", args=[north.scan.pk])).status_code == 404
    assert client.get(reverse("case_detail", args=[north.case.pk])).status_code == 404
    assert _events_after(mark) == [
        ("denied", "scan", str(north.scan.pk), "south-staff", "failure", "404 GET scans:image"),
        ("denied", "case", str(north.case.pk), "south-staff", "failure", "404 GET case_detail"),
    ]
    assert set(AuditEvent.objects.filter(id__gt=mark).values_list("clinic_id", flat=True)) == {south.clinic.pk}


def test_uploads_page_and_api(north, client, django_capture_on_commit_callbacks):
    client.force_login(north.staff)
    mark = _mark()
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            reverse("case_add_scans", args=[north.case.pk]),
            {"files": [upload(png_bytes(), "a.png"), upload(png_bytes((90, 90)), "b.png")]},
        )
    assert response.status_code == 302
    events = _events_after(mark)
    scan_ids = [str(s.pk) for s in north.case.scans.order_by("id")][-2:]
    assert events == [("upload", "scan", sid, "north-staff", "success", "") for sid in scan_ids]
    mark = _mark()
    with django_capture_on_commit_callbacks(execute=False):
        created = _api(north.staff).post(
            reverse("api:case-scans", args=[north.case.pk]), {"file": upload(png_bytes(), "c.png")}, format="multipart"
        )
    assert created.status_code == 201
    assert _events_after(mark) == [("upload", "scan", str(created.json()["id"]), "north-staff", "success", "")]
    # A rejected upload stores nothing and so records no upload.
    mark = _mark()
    bad = _api(north.staff).post(
        reverse("api:case-scans", args=[north.case.pk]), {"file": upload(b"not an image", "x.png")}, format="multipart"
    )
    assert bad.status_code == 400
    assert [e for e in _events_after(mark) if e[0] == "upload"] == []


def test_review(north):
    mark = _mark()
    response = _api(north.radiologist).post(
        reverse("api:scan-review", args=[north.scan.pk]), {"agrees": False}, format="json"
    )
    assert response.status_code == 200
    assert _events_after(mark) == [("review", "scan", str(north.scan.pk), "north-rad", "success", "disagrees")]


def test_delete_restore_and_purge(north, settings):
    case_id = str(north.case.pk)
    mark = _mark()
    case_soft_delete(case=north.case, by=north.admin)
    assert _events_after(mark) == [("delete", "case", case_id, "north-admin", "success", "")]
    mark = _mark()
    case_restore(case=north.case, by=north.admin)
    assert _events_after(mark) == [("restore", "case", case_id, "north-admin", "success", "")]
    case_soft_delete(case=north.case, by=north.admin)
    mark = _mark()
    assert cases_purge_deleted(now=timezone.now() + datetime.timedelta(days=settings.CASE_RETENTION_DAYS + 1)) == 1
    ((action, object_type, object_id, actor, outcome, _),) = _events_after(mark)
    assert (action, object_type, object_id, actor, outcome) == ("purge", "case", case_id, "", "success")
    assert AuditEvent.objects.get(id__gt=mark).clinic_id == north.clinic.pk


def test_admin_change_and_deactivation(north, client):
    client.force_login(north.admin)
    mark = _mark()
    page = client.post(
        reverse("admin:patients_patient_change", args=[north.patient.pk]),
        {"name": "Renamed Patient", "mrn": north.patient.mrn, "sex": ""},
    )
    assert page.status_code == 302, page.content.decode()[:2000]
    changed = ("admin_change", "patient", str(north.patient.pk), "north-admin", "success", "changed")
    assert _events_after(mark) == [changed]
    mark = _mark()
    client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "deactivate", "_selected_action": [str(north.staff.pk)]},
    )
    assert _events_after(mark) == [("deactivate", "user", str(north.staff.pk), "north-admin", "success", "")]


def test_events_cannot_be_changed_or_deleted_through_the_orm(north):
    event = audit_record(actor=north.staff, action="view", obj=north.case)
    event.detail = "tampered"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(detail="tampered")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.bulk_update([event], ["detail"])
    assert AuditEvent.objects.get(pk=event.pk).detail == ""
    with pytest.raises(ValueError, match="unknown audit action"):
        audit_record(actor=north.staff, action="made-up")


RAW_TAMPERING = (
    "UPDATE audit_auditevent SET detail = 'tampered' WHERE id = %s",
    "DELETE FROM audit_auditevent WHERE id = %s",
)


def _assert_raw_sql_refused(event: AuditEvent, statements: tuple[str, ...]) -> None:
    """Each statement, raw SQL on the event's row, is refused by the database; the row stays."""
    for sql in statements:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).detail == ""


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL (CI) only")
def test_postgresql_trigger_refuses_raw_update_and_delete(north):
    event = audit_record(actor=north.staff, action="view", obj=north.case)
    _assert_raw_sql_refused(event, RAW_TAMPERING)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite triggers (make run); PostgreSQL: above")
def test_sqlite_triggers_refuse_raw_update_and_delete(north):
    """Issue 15 item 5: `make run`'s SQLite refuses too, whatever the client (raw SQL here)."""
    event = audit_record(actor=north.staff, action="view", obj=north.case)
    _assert_raw_sql_refused(event, (*RAW_TAMPERING, "DELETE FROM audit_auditevent WHERE id >= %s"))
    # A later migration that remakes the table drops them: every migrate puts them back.
    from apps.audit.db_roles import SQLITE_DROP, grant_after_migrate

    with connection.cursor() as cursor:
        for statement in SQLITE_DROP:
            cursor.execute(statement)
    grant_after_migrate(sender=None)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])


def test_admin_is_read_only_scoped_and_exports_csv(north, south, client):
    audit_record(actor=south.staff, action="view", obj=south.case)
    own = audit_record(actor=north.staff, action="view", obj=north.case)
    client.force_login(north.admin)
    changelist = client.get(reverse("admin:audit_auditevent_changelist"))
    assert changelist.status_code == 200
    shown = list(changelist.context["cl"].queryset)
    assert own in shown
    assert {e.clinic_id for e in shown} == {north.clinic.pk}
    assert "south" not in changelist.content.decode()
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    detail = client.get(reverse("admin:audit_auditevent_change", args=[own.pk]))
    assert detail.status_code == 200
    assert not detail.context["has_change_permission"]
    assert client.post(reverse("admin:audit_auditevent_change", args=[own.pk]), {"detail": "x"}).status_code == 403
    assert client.post(reverse("admin:audit_auditevent_delete", args=[own.pk]), {"post": "yes"}).status_code == 403
    every = [str(pk) for pk in AuditEvent.objects.values_list("pk", flat=True)]  # south's ids injected too
    mark = _mark()
    exported = client.post(
        reverse("admin:audit_auditevent_changelist"), {"action": "export_csv", "_selected_action": every}
    )
    assert exported["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert rows
    assert {r["actor_username"] for r in rows} <= {"north-staff", "north-admin", "north-rad", ""}
    assert str(own.object_id) in {r["object_id"] for r in rows if r["action"] == "view"}
    assert AuditEvent.objects.filter(id__gt=mark, action="export", object_type="audit").count() == 1


def test_api_lists_the_clinics_events_for_clinic_admins_only(north, south):
    audit_record(actor=south.staff, action="view", obj=south.case)
    audit_record(actor=north.staff, action="view", obj=north.case)
    url = reverse("api:audit-event-list")
    for user in (north.staff, north.radiologist):
        assert _api(user).get(url).status_code == 403
    assert APIClient().get(url).status_code in (401, 403)
    body = _api(north.admin).get(url).json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == AuditEvent.objects.filter(clinic=north.clinic).count()
    assert set(body["results"][0]) == {"actor", "action", "object_type", "object_id", "ip", "at", "outcome"}
    assert all(not r["actor"].startswith("south") for r in body["results"])

    api = _api(north.admin)
    views = api.get(url, {"action": "view", "object_type": "case", "object_id": north.case.pk, "actor": "north-staff"})
    assert [(r["action"], r["object_id"], r["actor"]) for r in views.json()["results"]] == [
        ("view", str(north.case.pk), "north-staff")
    ]
    later = (timezone.now() + datetime.timedelta(minutes=1)).isoformat()
    assert api.get(url, {"since": later}).json()["count"] == 0
    assert api.get(url, {"since": timezone.now().date().isoformat()}).json()["count"] == body["count"]
    assert api.get(url, {"since": "yesterday"}).status_code == 400
    assert api.get(url, {"action": "made-up"}).status_code == 400
    paged = api.get(url, {"page": 1}).json()
    assert paged["previous"] is None
