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
