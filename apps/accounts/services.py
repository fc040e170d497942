"""Writes for clinics and users."""

from django.db import transaction

from .models import Clinic, Role, User


def clinic_create(*, name: str) -> Clinic:
    clinic = Clinic(name=name)
    clinic.full_clean()
    clinic.save()
    return clinic


@transaction.atomic
def user_create(
    *,
    clinic: Clinic | None,
    username: str,
    password: str | None,
    role: str = Role.CLINIC_STAFF,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    """Create a user in a clinic. A clinic admin gets Django admin access (is_staff)."""
    user = User(
        clinic=clinic,
        username=username,
        role=role,
        email=email,
        first_name=first_name,
        last_name=last_name,
        is_staff=is_staff or role == Role.CLINIC_ADMIN,
        is_superuser=is_superuser,
    )
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user
