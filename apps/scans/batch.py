"""A batch of files from the upload form where one bad file does not cost the good ones.

`scans_upload` (apps/scans/services/upload.py) is all or nothing on purpose (the API answers for the
request as a whole). A person at the form wants the good files stored and the bad ones named:
`scans_upload_keeping_good` tries the whole batch first (so a DICOM series is still published
as one study), and only when it is refused for some files' own problems names those files
and stores the others together (still one study); a request-wide refusal is never split.
A signed case stays all or nothing: each store would add its own addendum.
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

from .ingest import REQUEST_BUDGET, UploadRefused, check_uploads
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


def _over_request_budget(exc: ValidationError) -> bool:
    return any(error.code == REQUEST_BUDGET for error in getattr(exc, "error_list", []))


def scans_upload_keeping_good(
    *, case: Case, uploaded_by: User, uploads: Sequence[UploadedFile], addendum: str = ""
) -> BatchOutcome:
    """Store the good files of a batch and name the bad ones. ValidationError only when no file
    could be stored (with every file's messages), as `scans_upload` does.

    A request refused for a request-wide limit (its slices or decoded size together, the DICOM
    bomb budget of issue 15) is refused as a whole: stored file by file it would get round the
    budget. Otherwise the bad files are found one by one from their checks (headers only) and
    the good ones stored together in ONE `scans_upload` call, which budgets them again as one
    request (the running budget) and keeps their DICOM files one study."""
    try:
        with transaction.atomic():
            outcome = scans_upload(case=case, uploaded_by=uploaded_by, uploads=uploads, addendum=addendum)
        return BatchOutcome(list(outcome.scans), list(outcome.skipped), list(outcome.studies))
    except ValidationError as exc:
        if len(uploads) < 2 or case.is_signed or _over_request_budget(exc):
            raise
    result = BatchOutcome()
    good: list[UploadedFile] = []
    for upload in uploads:
        _rewind(upload)
        try:
            check_uploads([upload])
        except UploadRefused as exc:
            result.refused.extend(exc.problems)
        else:
            good.append(upload)
    if not good:
        raise ValidationError(result.refused)
    for upload in good:
        _rewind(upload)
    try:
        with transaction.atomic():
            outcome = scans_upload(case=case, uploaded_by=uploaded_by, uploads=good)
    except ValidationError as exc:
        code = REQUEST_BUDGET if _over_request_budget(exc) else "invalid"
        raise ValidationError([ValidationError(m, code=code) for m in [*result.refused, *exc.messages]]) from exc
    result.scans.extend(outcome.scans)
    result.skipped.extend(outcome.skipped)
    result.studies.extend(outcome.studies)
    return result

