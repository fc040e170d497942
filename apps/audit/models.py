"""The audit trail: one append-only row per event (who, which clinic, what, on which object,
from where, when, with what outcome).

Rows are written only through `apps.audit.services.audit_record`. Nothing in the application
can change or delete one: the model and its queryset refuse, the admin is read-only, on
PostgreSQL a trigger refuses UPDATE and DELETE (migration 0002) and the runtime role may only
INSERT and SELECT, on SQLite triggers refuse them (0004; apps/audit/db_roles.py). Objects are named by type and
id, not by foreign key, so an event outlives the case or scan it names; the actor and clinic
are PROTECTed foreign keys (users are deactivated, never deleted).
"""

from django.conf import settings
from django.db import models

from apps.accounts.clinics import ClinicQuerySet


class AuditAction(models.TextChoices):
    LOGIN = "login", "Signed in"
    LOGOUT = "logout", "Signed out"
    LOGIN_FAILED = "login_failed", "Failed sign-in"
    LOCKOUT = "lockout", "Locked out"
    TOKEN_CREATE = "token_create", "API token created"
    VIEW = "view", "Viewed"
    DOWNLOAD = "download", "Downloaded a file"
    UPLOAD = "upload", "Uploaded a scan"
    REVIEW = "review", "Reviewed"
    EXPORT = "export", "Exported a report"
    DELETE = "delete", "Deleted"
    RESTORE = "restore", "Restored"
    PURGE = "purge", "Purged after retention"
    DEACTIVATE = "deactivate", "Deactivated a user"
    ADMIN_CHANGE = "admin_change", "Admin change"
    # A request refused on a route (401/403/404: another clinic's id, a role's limit):
    # AuditRequestMiddleware records it unless the view recorded its own failure.
    DENIED = "denied", "Refused access"


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"  # refused: wrong password, locked out, not allowed


class AppendOnlyError(Exception):
    """Raised on any attempt to change or delete an audit event."""


class AuditEventQuerySet(ClinicQuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit events cannot be changed.")

    def delete(self):
        raise AppendOnlyError("Audit events cannot be deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError("Audit events cannot be changed.")

    def update_or_create(self, *args, **kwargs):
        raise AppendOnlyError("Audit events cannot be changed.")


class AuditEvent(models.Model):
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # The name as typed (failed sign-ins) or the actor's username at the time.
    actor_username = models.CharField(max_length=150, blank=True)
    clinic = models.ForeignKey("accounts.Clinic", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    action = models.CharField(max_length=20, choices=AuditAction.choices)
    object_type = models.CharField(max_length=40, blank=True)  # "case", "scan", "patient", "user"...
    object_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=AuditOutcome.choices, default=AuditOutcome.SUCCESS)
    detail = models.CharField(max_length=255, blank=True)  # e.g. which file: "image", "overlay"

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["clinic", "-at"]),
            models.Index(fields=["clinic", "action", "-at"]),
            models.Index(fields=["object_type", "object_id"]),
            # The sign-in back-off counts an address's recent failures (apps/accounts/signin_guard.py).
            models.Index(fields=["action", "ip", "-at"], name="audit_action_ip_at"),
        ]

    def __str__(self) -> str:
        target = f" {self.object_type} {self.object_id}" if self.object_type else ""
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_username or '-'} {self.action}{target} ({self.outcome})"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events cannot be deleted.")
