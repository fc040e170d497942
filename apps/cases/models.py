from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from apps.accounts.clinics import ClinicManager

# What a signature covers: none of it changes once the case is signed (corrections are
# addenda by a radiologist). Only the soft-deletion columns may still change.
SIGNED_LOCKED_FIELDS = (
    "clinic_id", "patient_id", "created_by_id", "title", "clinical_notes", "signed_by_id", "signed_at", "conclusion",
)  # fmt: skip
_MUTABLE_AFTER_SIGNING = frozenset({"deleted_at", "deleted_by"})


class SignedCaseLocked(ValidationError):
    """A change to a signed case: refused in every way in (admin, API, pages, services)."""

    def __init__(self) -> None:
        super().__init__(
            "This case is signed and locked: corrections go through an addendum by a radiologist.",
            code="signed_case_locked",
        )


class CaseStatus(models.TextChoices):
    """Derived from the case's scans (the rule: selectors.CASE_STATUS_RULE), never stored."""

    EMPTY = "empty", "No scans"
    PENDING = "pending", "In progress"
    FAILED = "failed", "Failed"
    # Every finished scan was rejected by the OOD gate (none analysed, none failed). A rejected
    # image beside analysed slices does not relabel the case: it is counted, not the status.
    REJECTED = "rejected", "Not brain MRI"
    DONE = "done", "Analysed"  # every scan has its answer (not "done" with the case: see sign-off)


class LiveCaseManager(ClinicManager):
    """Cases not deleted: what every page, API and selector works on (the default manager)."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(deleted_at__isnull=True)


class Case(models.Model):
    clinic = models.ForeignKey("accounts.Clinic", on_delete=models.PROTECT, related_name="cases")
    patient = models.ForeignKey("patients.Patient", on_delete=models.PROTECT, related_name="cases")
    # PROTECT: users are deactivated, never deleted, so "who did it" is never blanked.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="cases_created"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    title = models.CharField(max_length=200, blank=True)
    clinical_notes = models.TextField(blank=True)
    # Soft deletion: hidden everywhere at once, restorable until the retention purge
    # (apps/cases/services.py) deletes the row, its scans and their files.
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Sign-off (cases.services.case_sign): a signed case is locked; later scans and reviews
    # need an addendum (CaseAddendum). Until then the model's output is shown as unverified.
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="cases_signed"
    )
    signed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    conclusion = models.TextField(blank=True)
    # The worklist's priority (apps.cases.worklist.Priority) from the case's analysed scans;
    # NULL when signed or when nothing is analysed yet. Stored and indexed so the worklist sorts
    # and pages in SQL; kept current by apps/cases/signals.py (scans, predictions, sign-off).
    worklist_priority = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)

    objects = LiveCaseManager()
    all_objects = ClinicManager()  # deleted ones too: the admin's trash and the purge

    class Meta:
        base_manager_name = "all_objects"  # scan.case still resolves for a deleted case
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["clinic", "-created_at"]),
            models.Index(fields=["clinic", "worklist_priority", "created_at"], name="case_worklist_order"),
        ]

    def __str__(self) -> str:
        return self.title or f"Case {self.pk}"

    def save(self, *args, **kwargs) -> None:
        update_fields = kwargs.get("update_fields")
        if self.pk is not None and not (update_fields and set(update_fields) <= _MUTABLE_AFTER_SIGNING):
            self._refuse_changes_if_signed()
        super().save(*args, **kwargs)

    @property
    def is_signed(self) -> bool:
        return self.signed_at is not None

    def _refuse_changes_if_signed(self) -> None:
        # Compared with the stored row, not this instance: whoever loaded it, the lock holds.
        stored = Case.all_objects.filter(pk=self.pk).values(*SIGNED_LOCKED_FIELDS).first()
        if stored is None or stored["signed_at"] is None:
            return
        if any(getattr(self, name) != value for name, value in stored.items()):
            raise SignedCaseLocked()


class CaseAddendum(models.Model):
    """Text added to a signed case, kept for good: why a scan was added or a reading changed
    after sign-off, or a later remark on the conclusion."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="addenda")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ClinicManager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Addendum to case {self.case_id} ({self.created_at:%Y-%m-%d %H:%M})"

