"""Moving existing media from a local folder into the configured storage (the S3 bucket)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from django.core.files import File
from django.core.files.storage import Storage, default_storage

logger = logging.getLogger(__name__)


def is_missing_object(exc: BaseException) -> bool:
    """The storage says the file is not there: FileNotFoundError (local disk) or botocore's
    ClientError with NoSuchKey / 404 (S3)."""
    if isinstance(exc, FileNotFoundError):
        return True
    error = getattr(exc, "response", None)
    code = str(error.get("Error", {}).get("Code")) if isinstance(error, dict) else ""
    return code in {"404", "NoSuchKey", "NotFound"}


@dataclass
class MediaCopyReport:
    copied: int = 0
    already_there: int = 0
    problems: list[str] = field(default_factory=list)


def media_copy_to_storage(
    *, source: Path, storage: Storage = default_storage, dry_run: bool = False
) -> MediaCopyReport:
    """Copy every file under `source` to `storage` under the same relative name, which is the
    name the database rows hold, so rows need no change. An object already there with the same
    size is left alone, so the command can be run again after an interruption. Local files are
    never deleted: remove MEDIA_ROOT yourself once the pages serve from the bucket."""
    report = MediaCopyReport()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        name = path.relative_to(source).as_posix()
        if storage.exists(name) and storage.size(name) == path.stat().st_size:
            report.already_there += 1
            continue
        if dry_run:
            report.copied += 1
            continue
        with path.open("rb") as handle:
            stored = storage.save(name, File(handle, name=name))
        if stored != name:  # a different object of that name existed: keep both, say so
            report.problems.append(f"{name}: an object of that name differs; copied as {stored}, rows not changed")
        report.copied += 1
    return report
