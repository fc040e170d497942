"""A batch of files from the upload form where one bad file does not cost the good ones.

`scans_upload` (apps/scans/services.py) is all or nothing on purpose (the API answers for the
request as a whole). A person at the form wants the good files stored and the bad ones named:
`scans_upload_keeping_good` tries the whole batch first (so a DICOM series is still published
as one study), and only when it is refused stores each file on its own, collecting each bad
file's messages. A signed case stays all or nothing: each store would add its own addendum.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from apps.accounts.models import User
from apps.cases.models import Case

from .models import Scan, StudyUpload
from .services import scans_upload


@dataclass
class BatchOutcome:
    scans: list[Scan] = field(default_factory=list)
    skipped: list = field(default_factory=list)  # ingest.Skipped: zip members left out, with why
    studies: list[StudyUpload] = field(default_factory=list)  # DICOM: unpacked by the study job
    refused: list[str] = field(default_factory=list)  # each bad file's messages (they name the file)


def _rewind(upload: UploadedFile) -> None:
    with contextlib.suppress(AttributeError, OSError, ValueError):
        upload.seek(0)


def scans_upload_keeping_good(
    *, case: Case, uploaded_by: User, uploads: Sequence[UploadedFile], addendum: str = ""
) -> BatchOutcome:
    """Store the good files of a batch and name the bad ones. ValidationError only when no file
    could be stored (with every file's messages), as `scans_upload` does."""
    try:
        with transaction.atomic():
            outcome = scans_upload(case=case, uploaded_by=uploaded_by, uploads=uploads, addendum=addendum)
        return BatchOutcome(list(outcome.scans), list(outcome.skipped), list(outcome.studies))
    except ValidationError:
        if len(uploads) < 2 or case.is_signed:
            raise
    result = BatchOutcome()
    for upload in uploads:
        _rewind(upload)
        try:
            with transaction.atomic():
                outcome = scans_upload(case=case, uploaded_by=uploaded_by, uploads=[upload])
        except ValidationError as exc:
            result.refused.extend(exc.messages)
        else:
            result.scans.extend(outcome.scans)
            result.skipped.extend(outcome.skipped)
            result.studies.extend(outcome.studies)
    if not result.scans and not result.studies:
        raise ValidationError(result.refused)
    return result
