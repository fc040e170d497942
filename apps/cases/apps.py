from django.apps import AppConfig


class CasesConfig(AppConfig):
    name = "apps.cases"
    label = "cases"

    def ready(self) -> None:
        from . import signals  # noqa: F401 (keeps Case.worklist_priority current)
