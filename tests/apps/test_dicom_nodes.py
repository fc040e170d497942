"""DICOM nodes (issue 18): clinic admins register, change and deactivate them over the API;
an AE title belongs to one clinic; every change and read is audited."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.audit.models import AuditAction, AuditEvent
from apps.dicomnet.models import DicomNode
from tests.testkit.data import api_token

BODY = {"ae_title": "ORTHANC", "host": "127.0.0.1", "port": 4242, "send_results": True}


def _client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def test_admin_registers_lists_changes_and_deactivates_a_node(north):
    api = _client(north.admin)
    created = api.post(reverse("api:dicom-node-list"), BODY, format="json")
    assert created.status_code == 201, created.content
    node = created.json()
    assert node["ae_title"] == "ORTHANC"
    assert node["port"] == 4242
    assert node["send_results"]
    assert node["is_active"]
    stored = DicomNode.objects.get(pk=node["id"])
    assert stored.clinic == north.clinic
    # The receiver acts as the node's own account, which nobody can sign in as.
    assert stored.service_user.clinic == north.clinic
    assert not stored.service_user.is_active
    assert not stored.service_user.has_usable_password()

    listed = api.get(reverse("api:dicom-node-list")).json()
    assert [n["ae_title"] for n in listed["results"]] == ["ORTHANC"]

    url = reverse("api:dicom-node-detail", kwargs={"node_id": node["id"]})
    changed = api.patch(url, {"port": 4343}, format="json")
    assert changed.status_code == 200
    assert changed.json()["port"] == 4343
    gone = api.delete(url)
    assert gone.status_code == 200
    assert gone.json()["is_active"] is False
    assert DicomNode.objects.filter(pk=node["id"]).exists()  # deactivated, not deleted

    details = list(
        AuditEvent.objects.filter(clinic=north.clinic, object_type="dicom_node", action=AuditAction.ADMIN_CHANGE)
        .order_by("at", "id")
        .values_list("detail", flat=True)
    )
    assert details == [
        "registered DICOM node ORTHANC",
        "DICOM node ORTHANC: changed port",
        "DICOM node ORTHANC: deactivated",
    ]
    assert AuditEvent.objects.filter(clinic=north.clinic, object_type="dicom_node", action=AuditAction.VIEW).exists()


def test_an_ae_title_belongs_to_one_clinic(north, south):
    assert _client(north.admin).post(reverse("api:dicom-node-list"), BODY, format="json").status_code == 201
    taken = _client(south.admin).post(reverse("api:dicom-node-list"), BODY, format="json")
    assert taken.status_code == 400
    error = taken.json()["error"]
    assert "already registered" in error["fields"]["ae_title"][0]
    assert north.clinic.name not in taken.content.decode()  # says nothing of who holds it
    assert DicomNode.objects.filter(ae_title="ORTHANC").count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "ae_title": "A" * 17}, "ae_title"),
        ({**BODY, "ae_title": "BAD\\AE"}, "ae_title"),
        ({**BODY, "port": 70000}, "port"),
        ({**BODY, "host": ""}, "host"),
    ],
)
def test_bad_node_input_is_a_400_naming_the_field(body, field, north):
    response = _client(north.admin).post(reverse("api:dicom-node-list"), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not DicomNode.objects.exists()


def test_only_clinic_admins_write_and_members_read(north):
    assert _client(north.admin).post(reverse("api:dicom-node-list"), BODY, format="json").status_code == 201
    for user in (north.staff, north.radiologist):
        api = _client(user)
        assert api.post(reverse("api:dicom-node-list"), {**BODY, "ae_title": "X"}, format="json").status_code == 403
        assert api.get(reverse("api:dicom-node-list")).json()["count"] == 1
    node = DicomNode.objects.get()
    assert _client(north.staff).delete(reverse("api:dicom-node-detail", kwargs={"node_id": node.pk})).status_code == 403
    node.refresh_from_db()
    assert node.is_active


def test_another_clinics_node_is_absent(north, south):
    node = _client(north.admin).post(reverse("api:dicom-node-list"), BODY, format="json").json()
    api = _client(south.admin)
    assert api.get(reverse("api:dicom-node-list")).json()["count"] == 0
    url = reverse("api:dicom-node-detail", kwargs={"node_id": node["id"]})
    for method in ("get", "patch", "delete"):
        assert getattr(api, method)(url).status_code == 404
    assert DicomNode.objects.get(pk=node["id"]).is_active


def test_clinic_admin_registers_a_node_in_the_django_admin(north, client):
    north.admin.is_staff = True
    north.admin.save()
    client.force_login(north.admin)
    response = client.post(
        reverse("admin:dicomnet_dicomnode_add"),
        {"ae_title": "SCANNER1", "host": "10.0.0.5", "port": "104", "send_results": "", "is_active": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    node = DicomNode.objects.get(ae_title="SCANNER1")
    assert node.clinic == north.clinic
    assert node.service_user.clinic == north.clinic
    assert AuditEvent.objects.filter(
        action=AuditAction.ADMIN_CHANGE, object_type="dicom_node", object_id=str(node.pk), clinic=north.clinic
    ).exists()
