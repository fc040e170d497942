"""Create the demo clinic and its users `admin`, `radiologist` and `staff`. Idempotent.

The password comes from DEMO_PASSWORD; without it one is generated and printed. On a rerun
existing users keep their password unless DEMO_PASSWORD is set (then it is applied again).
"""

import os
import secrets

from django.core.management.base import BaseCommand

from apps.accounts.models import Clinic, Role, User
from apps.accounts.services import user_create

DEMO_CLINIC = "Demo Clinic"
DEMO_USERS = (
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
        for username, role, superuser in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                if env_password is None and generated is None:
                    generated = secrets.token_urlsafe(12)
                user_create(
                    clinic=clinic,
                    username=username,
                    password=env_password or generated,
                    role=role,
                    is_staff=superuser,
                    is_superuser=superuser,
                )
                self.stdout.write(f"created {username} ({role})")
                continue
            user.clinic, user.role = clinic, role
            user.is_staff = user.is_staff or superuser or role == Role.CLINIC_ADMIN
            user.is_superuser = user.is_superuser or superuser
            if env_password is not None:
                user.set_password(env_password)
            user.save()
            self.stdout.write(f"{username} exists ({role})")
        if generated is not None:
            self.stdout.write(self.style.WARNING(f"Demo password for new users: {generated}"))
        elif env_password is not None:
            self.stdout.write("Demo users' password is DEMO_PASSWORD.")
