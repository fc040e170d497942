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


def test_clinic_admin_cannot_see_edit_or_reset_a_superuser_of_their_clinic(north, client):
    root = User.objects.create_superuser("clinic-root", "r@example.org", "root-pass-123", clinic=north.clinic)
    client.force_login(north.admin)
    changelist = client.get(reverse("admin:accounts_user_changelist"))
    assert root not in list(changelist.context["cl"].queryset)
    assert client.get(reverse("admin:accounts_user_change", args=[root.pk])).status_code == 302
    password_url = reverse("admin:auth_user_password_change", args=[root.pk])
    assert client.get(password_url).status_code == 404
    response = client.post(password_url, {"password1": "taken-over-123!", "password2": "taken-over-123!"})
    assert response.status_code == 404
    root.refresh_from_db()
    assert root.check_password("root-pass-123")


def test_scan_admin_review_is_read_only_and_lists_no_other_clinics_users(north, south, client):
    from django.contrib.auth.models import Permission

    from apps.scans.services import scan_review

    scan_review(scan=north.scan, reviewer=north.radiologist, agrees=True)
    # Even with Django's review permissions (a superuser may grant them), nothing is editable.
    north.admin.user_permissions.add(*Permission.objects.filter(codename__endswith="_scanreview"))
    client.force_login(north.admin)
    page = client.get(reverse("admin:scans_scan_change", args=[north.scan.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert south.radiologist.username not in html
    assert south.admin.username not in html
    assert north.radiologist.username in html  # the review is shown
    (review_formset,) = [f for f in page.context["inline_admin_formsets"] if f.opts.model.__name__ == "ScanReview"]
    assert not review_formset.has_change_permission
    assert not review_formset.has_add_permission
    form_fields = page.context["adminform"].form.fields
    assert "status" not in form_fields
    assert "error" not in form_fields


def test_clinic_admin_cannot_edit_last_login_or_date_joined(north, client):
    """Issue 15 (Low): what the system records about a sign-in is never typed in the admin."""
    client.force_login(north.admin)
    url = reverse("admin:accounts_user_change", args=[north.staff.pk])
    page = client.get(url)
    assert page.status_code == 200
    form_fields = page.context["adminform"].form.fields
    assert "last_login" not in form_fields
    assert "date_joined" not in form_fields
    before = User.objects.values_list("last_login", "date_joined").get(pk=north.staff.pk)
    client.post(url, {
        "username": north.staff.username, "role": north.staff.role, "is_active": "on",
        "last_login_0": "2001-01-01", "last_login_1": "00:00:00",
        "date_joined_0": "2001-01-01", "date_joined_1": "00:00:00",
    })  # fmt: skip
    after = User.objects.values_list("last_login", "date_joined").get(pk=north.staff.pk)
    assert after == before
    assert after[1].year != 2001
