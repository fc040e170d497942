"""Renderers that let an API client ask for a file (Accept: application/pdf or text/csv) from a
view answering with a ready-made file response. Errors are then sent as JSON text."""

import json
from typing import Any

from rest_framework.renderers import BaseRenderer


class _FileRenderer(BaseRenderer):
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return data if isinstance(data, bytes) else json.dumps(data).encode("utf-8")


class PdfRenderer(_FileRenderer):
    media_type = "application/pdf"
    format = "pdf"


class CsvRenderer(_FileRenderer):
    media_type = "text/csv"
    format = "csv"
