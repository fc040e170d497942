from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import signals  # noqa: F401 (login/logout/lockout, uploads, reviews, token revocation)
        from .db_roles import grant_after_migrate

        # After every migrate (once: sent for this app): the runtime role's grants, new tables included.
        post_migrate.connect(grant_after_migrate, sender=self, dispatch_uid="audit.grant_runtime_role")
