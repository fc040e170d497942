import pytest
from django.core.management import call_command
from django.urls import reverse

from apps.accounts.models import Clinic, Role, User
from apps.accounts.services import clinic_create, user_create
from tests.testkit.data import PASSWORD


@pytest.mark.django_db
def test_clinic_admin_gets_admin_site_access_staff_does_not():
    clinic = clinic_create(name="Central")
    admin = user_create(clinic=clinic, username="boss", password="pw-123456!", role=Role.CLINIC_ADMIN)
    staff = user_create(clinic=clinic, username="desk", password="pw-123456!", role=Role.CLINIC_STAFF)
    assert admin.is_staff
    assert not admin.is_superuser
    assert not staff.is_staff
    assert admin.check_password("pw-123456!")
    assert not staff.can_review
    assert user_create(clinic=clinic, username="rad", password=None, role=Role.RADIOLOGIST).can_review


@pytest.mark.django_db
def test_seed_demo_creates_users_with_env_password_and_is_idempotent(monkeypatch, capsys):
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    call_command("seed_demo")
    call_command("seed_demo")
    assert Clinic.objects.count() == 1
    users = {u.username: u for u in User.objects.all()}
    assert set(users) == {"admin", "radiologist", "staff"}
    assert users["admin"].role == Role.CLINIC_ADMIN
    # Issue 15: the demo's admin is its clinic's admin, not a superuser who sees every clinic.
    assert not users["admin"].is_superuser
    assert users["admin"].is_staff
    assert users["radiologist"].role == Role.RADIOLOGIST
    assert not users["radiologist"].is_staff
    assert users["staff"].role == Role.CLINIC_STAFF
    assert all(u.check_password("demo-pass-123") for u in users.values())
    assert all(u.clinic_id == users["admin"].clinic_id for u in users.values())


@pytest.mark.django_db
def test_seed_demo_without_env_prints_generated_password_and_keeps_it_on_rerun(monkeypatch, capsys):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    call_command("seed_demo")
    out = capsys.readouterr().out
    password = out.split("Demo password for new users: ")[1].split()[0]
    assert User.objects.get(username="staff").check_password(password)
    call_command("seed_demo")
    assert "Demo password" not in capsys.readouterr().out
    assert User.objects.get(username="radiologist").check_password(password)


def test_session_ends_with_the_browser_and_after_eight_hours(north, client, settings):
    response = client.post(reverse("login"), {"username": north.staff.username, "password": PASSWORD})
    assert response.status_code == 302
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["max-age"] == ""  # a browser-session cookie
    assert cookie["expires"] == ""
    assert client.session.get_expire_at_browser_close()
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE == 8 * 3600


@pytest.mark.django_db
def test_seed_demo_admin_sees_only_the_demo_clinic_and_a_rerun_demotes_an_old_superuser(monkeypatch, client):
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    other = Clinic.objects.create(name="Other Clinic")
    call_command("seed_demo")
    admin_user = User.objects.get(username="admin")
    User.objects.filter(pk=admin_user.pk).update(is_superuser=True)  # what older seeds made
    call_command("seed_demo")
    admin_user.refresh_from_db()
    assert not admin_user.is_superuser
    assert client.post(reverse("login"), {"username": "admin", "password": "demo-pass-123"}).status_code == 302
    clinics = client.get(reverse("admin:accounts_clinic_changelist"))
    assert clinics.status_code == 200
    assert [c.name for c in clinics.context["cl"].queryset] == ["Demo Clinic"]
    assert other.name not in clinics.content.decode()
