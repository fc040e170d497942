"""The scan a log line is about, on every line of its lifecycle (JSON logs carry `scan_id`).

`scan_context(scan_id)` marks every line logged inside it (the task's, the services', the
runtime's); `extra={"scan_id": ...}` does the same for a single line outside it (the upload).
`LOG_FORMAT=json` (settings/base.py) writes one JSON object per line, for log collectors.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

_scan_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("scan_id", default=None)


@contextlib.contextmanager
def scan_context(scan_id: int) -> Iterator[None]:
    token = _scan_id.set(scan_id)
    try:
        yield
    finally:
        _scan_id.reset(token)


class ScanIdFilter(logging.Filter):
    """Adds `scan_id` (None outside a scan) to each record, unless the line set its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "scan_id", None) is None:
            record.scan_id = _scan_id.get()
        return True


class StripQueryFilter(logging.Filter):
    """Request lines logged without their query string (`make run`'s runserver access log):
    a patient-name search (`?q=Surname`) must not land in the logs. gunicorn's access log
    does the same through its format (gunicorn.conf.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args and isinstance(record.args[0], str):
            record.args = (_without_query(record.args[0]), *record.args[1:])
        return True


def _without_query(request_line: str) -> str:
    method, _, rest = request_line.partition(" ")
    target, _, version = rest.partition(" ")
    return " ".join(part for part in (method, target.split("?", 1)[0], version) if part)
