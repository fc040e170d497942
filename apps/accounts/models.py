"""Clinics and their users. Every user belongs to one clinic; every clinical row hangs off a
clinic, and all reads go through selectors that filter by `user.clinic`."""

from django.contrib.auth.models import AbstractUser
from django.db import models

from .timezones import validate_time_zone


class Clinic(models.Model):
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Every time shown to the clinic's users is in this zone, with the zone named
    # (apps/accounts/timezones.py). An IANA name; stored times stay UTC.
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        db_default="UTC",  # rows written outside the ORM (SQL, the runtime role's checks) get it too
        validators=[validate_time_zone],
        help_text="IANA time zone name, e.g. Europe/Berlin: pages, PDF reports and CSV exports show times in it.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    CLINIC_STAFF = "clinic_staff", "Clinic staff"
    RADIOLOGIST = "radiologist", "Radiologist"
    CLINIC_ADMIN = "clinic_admin", "Clinic admin"


class User(AbstractUser):
    # Nullable only so `createsuperuser` works; a user without a clinic sees no clinical data.
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="members", null=True, blank=True)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.CLINIC_STAFF)

    @property
    def is_radiologist(self) -> bool:
        return self.role == Role.RADIOLOGIST

    @property
    def is_clinic_admin(self) -> bool:
        return self.role == Role.CLINIC_ADMIN

    @property
    def can_review(self) -> bool:
        """Only radiologists record agree/disagree on a prediction."""
        return self.role == Role.RADIOLOGIST
