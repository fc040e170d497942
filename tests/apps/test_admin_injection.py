"""The Django admin leaks nothing of another clinic, whatever a clinic admin types.

For every registered ModelAdmin and each of its views (changelist, add, change, delete,
history, autocomplete, popups), clinic north's admin injects clinic "bxqsouth"'s ids through
GET parameters, POST bodies, list filters and lookups. "bxqsouth" is in every string of that
clinic (clinic name, usernames, patient name, MRN "BXQSOUTH-001", case title), so one marker
checks them all: it must appear in no response. A superuser sees it (the control), so the
test can fail, and nothing of north's may end up pointing at bxqsouth's rows.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import models
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.cases.models import Case
from apps.patients.models import Patient
from tests.testkit.data import api_token, make_world

MARKER = "bxqsouth"
# Searches match bxqsouth's rows without containing the marker: the admin echoes the search
# box, and only a row of theirs may put the whole marker in a page.
SEARCHES = ("xqsou", "XQSOUTH-00")


@pytest.fixture
def other(db, django_capture_on_commit_callbacks):
    world = make_world(MARKER, django_capture_on_commit_callbacks)
    api_token(world.staff)
    Group.objects.create(name=f"{MARKER} group")
    return world


def _other_objects(other) -> dict[type[models.Model], models.Model]:
    """One bxqsouth-owned object per registered model (created when the world has none)."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from knox.models import AuthToken

    found: dict[type[models.Model], models.Model] = {
        type(other.clinic): other.clinic,
        type(other.staff): other.staff,
        Patient: other.patient,
        Case: other.case,
        type(other.scan): other.scan,
        AuditEvent: AuditEvent.objects.filter(clinic=other.clinic).first(),
        AuthToken: AuthToken.objects.filter(user=other.staff).first(),
        Group: Group.objects.get(name=f"{MARKER} group"),
    }
    ip = {"ip_address": "203.0.113.9", "user_agent": MARKER, "path_info": "/login/"}
    # bulk_create: the rows the database handler writes (the suite runs the cache handler,
    # whose save signal refuses them).
    (found[AccessAttempt],) = AccessAttempt.objects.bulk_create([AccessAttempt(
        username=f"{MARKER}-staff", failures_since_start=3, get_data="", post_data="", http_accept="*/*", **ip
    )])
    (found[AccessLog],) = AccessLog.objects.bulk_create(
        [AccessLog(username=f"{MARKER}-staff", http_accept="*/*", **ip)]
    )
    (found[AccessFailureLog],) = AccessFailureLog.objects.bulk_create([AccessFailureLog(
        username=f"{MARKER}-staff", http_accept="*/*", locked_out=False, **ip
    )])
    # The DICOM network (apps/dicomnet): bxqsouth's node, a study it sent and its outbox row.
    from apps.dicomnet.models import DicomStudy, OutboxItem, OutboxKind
    from apps.dicomnet.services import node_create

    node = node_create(created_by=other.admin, ae_title=MARKER.upper(), host=f"{MARKER}.example.org", port=104)
    study = DicomStudy.objects.create(clinic=other.clinic, node=node, case=other.case, study_instance_uid="1.2.3",
                                      patient_name=f"{MARKER} Patient")  # fmt: skip
    found[type(node)] = node
    found[OutboxItem] = OutboxItem.objects.create(
        study=study, node=node, kind=OutboxKind.SR, series_instance_uid="1.2.3.4", sop_instance_uid_root="1.2.3.5"
    )
    for model in admin.site._registry:
        assert found.get(model) is not None, f"add a {MARKER} object for {model._meta.label} to this test"
    return found


def _injected(model: type[models.Model], objects: dict) -> dict[str, str]:
    """bxqsouth's id for every foreign key (and the object's own id) of `model`."""
    params = {}
    for field in model._meta.get_fields():
        related = getattr(field, "related_model", None)
        if related in objects and (field.many_to_one or field.one_to_one or field.many_to_many):
            params[field.name] = str(objects[related].pk)
            params[f"{field.name}__id__exact"] = str(objects[related].pk)
    return params


def _admin_urls(model: type[models.Model], model_admin: admin.ModelAdmin, objects: dict, own: models.Model | None):
    """(method, url, data) triples for every admin view of `model`, with bxqsouth's ids injected."""
    info = (model._meta.app_label, model._meta.model_name)
    prefix = "_".join(info)
    theirs = objects[model]
    injected = _injected(model, objects)
    changelist = reverse(f"admin:{prefix}_changelist")
    yield "get", changelist, {}
    for term in SEARCHES:
        yield "get", changelist, {"q": term}
    yield "get", changelist, injected
    yield "get", changelist, {"clinic__id__exact": str(objects[type(objects[Case].clinic)].pk)}
    yield "get", changelist, {"case__clinic__id__exact": str(objects[Case].clinic_id)}
    yield "get", changelist, {"user__clinic__id__exact": str(objects[Case].clinic_id)}
    yield "get", changelist, {"patient__name__startswith": "bxq"}  # a lookup the admin does not allow
    yield "get", changelist, {"deleted": "yes"}
    yield "get", changelist, {"_popup": "1", "_to_field": "id"}
    yield "get", changelist, {"_popup": "1", "_to_field": "id", "q": SEARCHES[0]}
    add = reverse(f"admin:{prefix}_add")
    yield "get", add, injected
    yield "get", add, {**injected, "_popup": "1"}
    yield "post", add, {**injected, "title": "injected", "name": "injected", "mrn": "INJ-1", "username": "injected"}
    for view in ("change", "delete", "history"):
        url = reverse(f"admin:{prefix}_{view}", args=[theirs.pk])
        yield "get", url, {}
        yield "post", url, {"post": "yes", **injected}
    if own is not None:
        url = reverse(f"admin:{prefix}_change", args=[own.pk])
        yield "get", url, injected
        yield "post", url, injected
        yield "get", reverse(f"admin:{prefix}_history", args=[own.pk]), injected
    if model._meta.label == "accounts.User":
        yield "get", reverse("admin:auth_user_password_change", args=[theirs.pk]), {}
    # Actions on their ids (e.g. "delete selected", "deactivate", "export CSV").
    for action in model_admin.actions or []:
        name = action if isinstance(action, str) else action.__name__
        yield "post", changelist, {"action": name, "_selected_action": [str(theirs.pk)], "post": "yes"}
    yield "post", changelist, {"action": "delete_selected", "_selected_action": [str(theirs.pk)], "post": "yes"}
    # Autocomplete for every foreign key of the model, searched by bxqsouth's strings.
    for field in (*model._meta.fields, *model._meta.many_to_many):
        if field.related_model is not None:
            for term in ("", *SEARCHES):
                yield "get", reverse("admin:autocomplete"), {
                    "app_label": info[0], "model_name": info[1], "field_name": field.name, "term": term,
                }


def _own_objects(north) -> dict:
    return {
        type(north.clinic): north.clinic,
        type(north.staff): north.staff,
        Patient: north.patient,
        Case: north.case,
        type(north.scan): north.scan,
        AuditEvent: AuditEvent.objects.filter(clinic=north.clinic).first(),
    }


def _leaks(client, model, model_admin, objects, own) -> list[str]:
    found = []
    for method, url, data in _admin_urls(model, model_admin, objects, own):
        response = getattr(client, method)(url, data)
        assert response.status_code < 500, f"{method.upper()} {url} {data}: {response.status_code}"
        body = b"".join(response.streaming_content) if response.streaming else response.content
        if MARKER in body.decode(errors="replace").lower():
            found.append(f"{method.upper()} {url} {data}")
    return found


def test_no_admin_view_shows_another_clinics_strings(north, other, client):
    objects = _other_objects(other)
    own = _own_objects(north)
    snapshot = {
        "case": (north.case.patient_id, north.case.clinic_id),
        "patient": north.patient.clinic_id,
        "staff": north.staff.clinic_id,
    }
    client.force_login(north.admin)
    leaks = []
    for model, model_admin in admin.site._registry.items():
        leaks += _leaks(client, model, model_admin, objects, own.get(model))
    assert not leaks, "bxqsouth's strings shown to north's admin:\n" + "\n".join(leaks)

    # Nothing of north's was pointed at bxqsouth's rows, and bxqsouth's rows are all still there.
    north.case.refresh_from_db()
    north.patient.refresh_from_db()
    north.staff.refresh_from_db()
    assert snapshot == {
        "case": (north.case.patient_id, north.case.clinic_id),
        "patient": north.patient.clinic_id,
        "staff": north.staff.clinic_id,
    }
    assert not Case.all_objects.filter(clinic=other.clinic, deleted_at__isnull=False).exists()
    assert not Case.objects.filter(clinic=north.clinic, patient=other.patient).exists()
    assert not Patient.objects.filter(clinic=other.clinic).exclude(pk=other.patient.pk).exists()
    other.staff.refresh_from_db()
    assert other.staff.is_active
    from knox.models import AuthToken

    assert AuthToken.objects.filter(user=other.staff).exists()  # "revoke" with their ids did nothing
    assert not type(north.staff).objects.filter(username="injected", clinic=other.clinic).exists()


def test_control_a_superuser_does_see_the_marker(north, other, client):
    """The check above can fail: the same pages show bxqsouth's strings to a superuser."""
    root = type(north.staff).objects.create_superuser("root", "root@example.org", "root-pass-123")
    client.force_login(root)
    objects = _other_objects(other)
    for name in ("patients_patient", "cases_case", "accounts_user"):
        assert MARKER in client.get(reverse(f"admin:{name}_changelist")).content.decode().lower()
    page = client.get(reverse("admin:cases_case_add"), {"patient": objects[Patient].pk})
    assert MARKER in page.content.decode().lower()


def test_case_form_uses_a_scoped_autocomplete_not_a_raw_id_lookup(north, other, client):
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label in ("accounts", "patients", "cases", "scans", "audit", "knox"):
            assert not model_admin.raw_id_fields, f"{model._meta.label}: raw-id widgets look up any clinic"
    client.force_login(north.admin)
    found = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "cases", "model_name": "case", "field_name": "patient", "term": "Patient"},
    ).json()
    assert [r["id"] for r in found["results"]] == [str(north.patient.pk)]


def test_clinic_filters_are_for_superusers_and_deletes_too(north, other, client):
    client.force_login(north.admin)
    for name in ("patients_patient", "cases_case", "accounts_user", "scans_scan", "audit_auditevent"):
        page = client.get(reverse(f"admin:{name}_changelist"))
        specs = page.context["cl"].filter_specs
        assert not [s for s in specs if "clinic" in getattr(s, "field_path", "")], name
        assert "delete_selected" not in page.context["cl"].model_admin.get_actions(page.wsgi_request)
    assert client.get(reverse("admin:cases_case_delete", args=[north.case.pk])).status_code == 403
    assert client.get(reverse("admin:patients_patient_delete", args=[north.patient.pk])).status_code == 403
