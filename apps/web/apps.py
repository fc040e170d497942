from django.apps import AppConfig


class WebConfig(AppConfig):
    """Server-rendered pages (templates/ and static/ at the project root)."""

    name = "apps.web"
    label = "web"
