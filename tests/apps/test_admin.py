"""Django admin: a superuser sees every clinic; a clinic admin only their own."""

import pytest
from django.urls import reverse

from apps.accounts.models import User


def _clinic_id(obj) -> int:
    return obj.case.clinic_id if hasattr(obj, "case") else obj.clinic_id


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.org", "root-pass-123")


@pytest.mark.parametrize(
    ("model", "attr"),
    [("patients_patient", "patient"), ("cases_case", "case"), ("scans_scan", "scan"), ("accounts_user", "staff")],
)
def test_clinic_admin_sees_only_their_clinic(model, attr, north, south, client):
    client.force_login(north.admin)
    changelist = client.get(reverse(f"admin:{model}_changelist"))
    assert changelist.status_code == 200
    own, foreign = getattr(north, attr), getattr(south, attr)
    shown = list(changelist.context["cl"].queryset)
    assert own in shown
    assert foreign not in shown
    assert {_clinic_id(o) for o in shown} == {north.clinic.pk}
    assert client.get(reverse(f"admin:{model}_change", args=[own.pk])).status_code == 200
    # Django admin answers an object outside the queryset with a redirect to the index.
    foreign_page = client.get(reverse(f"admin:{model}_change", args=[foreign.pk]))
    assert foreign_page.status_code == 302
    assert foreign_page["Location"] == reverse("admin:index")


def test_staff_and_radiologists_have_no_admin(north, client):
    for user in (north.staff, north.radiologist):
        client.force_login(user)
        assert client.get(reverse("admin:patients_patient_changelist")).status_code == 302


def test_superuser_sees_every_clinic(superuser, north, south, client):
    client.force_login(superuser)
    changelist = client.get(reverse("admin:cases_case_changelist"))
    assert {c.pk for c in changelist.context["cl"].queryset} == {north.case.pk, south.case.pk}
    for name in ("accounts_clinic", "accounts_user", "patients_patient", "scans_scan"):
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200
    assert client.get(reverse("admin:scans_scan_change", args=[north.scan.pk])).status_code == 200
