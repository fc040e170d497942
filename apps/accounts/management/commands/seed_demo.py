"""Create the demo clinic and its users `admin`, `radiologist` and `staff`. Idempotent.

`admin` is the demo clinic's clinic admin (the admin site, scoped to that clinic), not a
superuser: a superuser sees every clinic. A rerun takes superuser status back from it.

The password comes from DEMO_PASSWORD; without it one is generated and printed. On a rerun
existing users keep their password unless DEMO_PASSWORD is set (then it is applied again).
"""

import os
import secrets

from django.core.management.base import BaseCommand

from apps.accounts.models import Clinic, Role, User
from apps.accounts.services import user_create

DEMO_CLINIC = "Demo Clinic"
DEMO_USERS = (  # (username, role, staff status: the admin site)
    ("admin", Role.CLINIC_ADMIN, True),
    ("radiologist", Role.RADIOLOGIST, False),
    ("staff", Role.CLINIC_STAFF, False),
)


class Command(BaseCommand):
    help = "Create a demo clinic with users admin, radiologist and staff (idempotent)."

    def handle(self, *args: object, **options: object) -> None:
        clinic, _ = Clinic.objects.get_or_create(name=DEMO_CLINIC)
        env_password = os.environ.get("DEMO_PASSWORD") or None
        generated = None
        for username, role, staff in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                if env_password is None and generated is None:
                    generated = secrets.token_urlsafe(12)
                user_create(
                    clinic=clinic,
                    username=username,
                    password=env_password or generated,
                    role=role,
                    is_staff=staff,
                    is_superuser=False,
                )
                self.stdout.write(f"created {username} ({role})")
                continue
            user.clinic, user.role = clinic, role
            user.is_staff = user.is_staff or staff or role == Role.CLINIC_ADMIN
            user.is_superuser = False  # a demo user sees its own clinic only
            if env_password is not None:
                user.set_password(env_password)
            user.save()
            self.stdout.write(f"{username} exists ({role})")
        if generated is not None:
            self.stdout.write(self.style.WARNING(f"Demo password for new users: {generated}"))
        elif env_password is not None:
            self.stdout.write("Demo users' password is DEMO_PASSWORD.")
