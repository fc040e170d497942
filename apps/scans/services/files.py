"""Files written before a database commit, removed again when the write fails."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.core.files.storage import default_storage


@contextlib.contextmanager
def removed_on_failure(written: list[str] | None = None) -> Iterator[list[str]]:
    """Yields a list the block appends each stored file's name to (`written`, when the caller
    fills it from elsewhere too); if the block raises (the rows roll back), those files are
    deleted, so no file outlives its row."""
    written = [] if written is None else written
    try:
        yield written
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise
