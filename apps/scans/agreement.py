"""Agreement over time: how often the radiologists' readings agree with the model, per model
version, per class and per month, within the user's clinic. This is how a clinic sees drift,
and the corrected readings are exported as labelled data for the next training run.

Only the latest review of each analysed scan counts (ScanReview history keeps the others).
Months are those of the model's result (Prediction.created_at), in the site's time zone.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncMonth
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.timezones import clinic_zone

from .labels import MODEL_LABELS, READING_LABELS
from .models import Scan, ScanStatus


def agreement_allowed(user: User) -> bool:
    """Clinic admins and radiologists see the model's agreement; clinic staff do not."""
    return user.clinic_id is not None and (user.is_radiologist or user.is_clinic_admin)


def _check(user: User) -> None:
    if not agreement_allowed(user):
        raise PermissionDenied("Only radiologists and clinic admins see the model's agreement.")


@dataclass
class Tally:
    reviewed: int = 0
    agreed: int = 0

    @property
    def rate(self) -> float | None:
        return self.agreed / self.reviewed if self.reviewed else None

    def add(self, n: int, agrees: bool) -> None:
        self.reviewed += n
        self.agreed += n if agrees else 0


@dataclass
class MonthAgreement:
    month: str  # "YYYY-MM"
    overall: Tally = field(default_factory=Tally)
    by_class: dict[str, Tally] = field(default_factory=lambda: {label.value: Tally() for label in MODEL_LABELS})


@dataclass
class VersionAgreement:
    """One model version: counts, the confusion matrix (rows: the model's label, columns: the
    reading) and per-class recall against the readings."""

    model_version: str
    overall: Tally = field(default_factory=Tally)
    confusion: dict[str, dict[str, int]] = field(
        default_factory=lambda: {m.value: {r.value: 0 for r in READING_LABELS} for m in MODEL_LABELS}
    )
    months: dict[str, MonthAgreement] = field(default_factory=dict)
    unlabelled: int = 0  # old disagreements that never said what the scan shows

    @property
    def recall(self) -> dict[str, float | None]:
        """Per class c: of the scans radiologists read as c, the share the model called c."""
        result = {}
        for label in MODEL_LABELS:
            read_as = sum(self.confusion[m.value][label.value] for m in MODEL_LABELS)
            result[label.value] = self.confusion[label.value][label.value] / read_as if read_as else None
        return result

    @property
    def read_as(self) -> dict[str, int]:
        """Per reading: how many scans radiologists read as it (the confusion matrix's column sums)."""
        return {r.value: sum(self.confusion[m.value][r.value] for m in MODEL_LABELS) for r in READING_LABELS}

    def month_list(self) -> list[MonthAgreement]:
        return [self.months[key] for key in sorted(self.months)]


def _reviewed_scans(user: User) -> QuerySet[Scan]:
    # A soft-deleted case is gone from every figure and export (until restored), like its pages.
    return Scan.objects.for_clinic(user.clinic_id).filter(
        case__deleted_at__isnull=True,
        status=ScanStatus.DONE,
        review__isnull=False,
        prediction__isnull=False,
    )


def agreement_by_version(*, user: User, model_version: str = "") -> list[VersionAgreement]:
    """Agreement per model version (newest first by first result), one grouped query."""
    _check(user)
    scans = _reviewed_scans(user)
    if model_version:
        scans = scans.filter(prediction__model_version=model_version)
    rows = (
        scans.annotate(month=TruncMonth("prediction__created_at"))
        .values("prediction__model_version", "month", "prediction__label", "review__label", "review__agrees")
        .annotate(n=Count("pk"))
        .order_by()
    )
    versions: dict[str, VersionAgreement] = {}
    first_month: dict[str, str] = {}
    for row in rows:
        version = row["prediction__model_version"]
        entry = versions.setdefault(version, VersionAgreement(model_version=version))
        month = row["month"].strftime("%Y-%m")
        first_month[version] = min(first_month.get(version, month), month)
        predicted, reading, agrees, n = row["prediction__label"], row["review__label"], row["review__agrees"], row["n"]
        entry.overall.add(n, agrees)
        bucket = entry.months.setdefault(month, MonthAgreement(month=month))
        bucket.overall.add(n, agrees)
        if predicted in bucket.by_class:
            bucket.by_class[predicted].add(n, agrees)
        if reading and predicted in entry.confusion and reading in entry.confusion[predicted]:
            entry.confusion[predicted][reading] += n
        else:
            entry.unlabelled += n
    return sorted(versions.values(), key=lambda v: (first_month[v.model_version], v.model_version), reverse=True)


READINGS_CSV_HEADER = [
    "scan_id", "case_id", "sha256", "image", "model_version", "model_label", "reading",
    "agrees", "reviewer", "reviewed_at", "case_signed",
]  # fmt: skip


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (usernames and labels only today;
    kept so that a future column from user input stays safe)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def agreement_readings_csv(*, user: User) -> Iterator[str]:
    """The clinic's corrected readings as labelled CSV lines (header first): each reviewed scan
    with its stored image (a made-up name) and checksum, the model's label and the radiologist's
    reading (stored label values). No upload file name: it is often the patient's name.
    A generator: the role check and the audit event happen when the first line is taken."""
    from apps.audit.models import AuditAction
    from apps.audit.services import audit_record

    _check(user)
    audit_record(actor=user, action=AuditAction.EXPORT, object_type="readings", detail="labelled readings csv")
    scans = (
        _reviewed_scans(user)
        .exclude(review__label="")
        .select_related("prediction", "review", "review__reviewer", "case")
        .order_by("pk")
    )
    zone = clinic_zone(user.clinic)  # streamed after the request's own zone is gone: named here
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(READINGS_CSV_HEADER)
    yield flush()
    for scan in scans.iterator(chunk_size=500):
        review, prediction = scan.review, scan.prediction
        values = (
            scan.pk, scan.case_id, scan.sha256, scan.image.name,
            prediction.model_version, prediction.label, review.label, "yes" if review.agrees else "no",
            review.reviewer.username, timezone.localtime(review.reviewed_at, zone).isoformat(),
            "yes" if scan.case.is_signed else "no",
        )  # fmt: skip
        writer.writerow(_cell(value) for value in values)
        yield flush()


def agreement_model_versions(*, user: User) -> list[str]:
    """Model versions with at least one reviewed result in the clinic (for the filter)."""
    _check(user)
    versions = _reviewed_scans(user).values_list("prediction__model_version", flat=True).distinct()
    return sorted(set(versions))
