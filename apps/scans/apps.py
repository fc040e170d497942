from django.apps import AppConfig


class ScansConfig(AppConfig):
    name = "apps.scans"
    label = "scans"

    def ready(self) -> None:
        from . import signals  # noqa: F401 (connects the file clean-up on delete)
