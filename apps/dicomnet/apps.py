from django.apps import AppConfig


class DicomnetConfig(AppConfig):
    """The platform inside the hospital's imaging network: DICOM nodes, the C-STORE receiver,
    STOW-RS, and results sent back to the PACS through an outbox (docs/pacs.md)."""

    name = "apps.dicomnet"
    label = "dicomnet"
    verbose_name = "DICOM network"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (links received instances to their unpacked scans)
