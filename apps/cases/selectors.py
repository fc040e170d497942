"""Reads for cases, always within the user's clinic.

The history page renders `case_history` over 10,000+ cases; its query count is constant
(count, page ids, the page's cases, one prefetch of their scans) whatever the page size.
"""

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import Case as SqlCase
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_date

from apps.accounts.models import User
from apps.patients.models import Patient
from apps.scans.labels import probability_text
from apps.scans.models import Scan, ScanStatus

from .models import Case, CaseAddendum, CaseStatus

MAX_PER_PAGE = 100

# Which of a case's scans count for its status: the kind's count annotation and its filter.
_SCAN_KINDS: dict[str, tuple[str, dict[str, object]]] = {
    "any": ("scans_total", {}),
    "pending": ("scans_pending", {"status__in": ScanStatus.PENDING}),  # held: waits for a person
    "failed": ("scans_failed", {"status": ScanStatus.FAILED}),
    "done": ("scans_done", {"status": ScanStatus.DONE}),
}

# THE rule for a case's status: the first line whose kind of scan is present (True) or absent
# (False) gives it. Both the `status` annotation (case_list) and the status filter are built
# from it.
CASE_STATUS_RULE: tuple[tuple[CaseStatus, str, bool], ...] = (
    (CaseStatus.EMPTY, "any", False),
    (CaseStatus.PENDING, "pending", True),
    (CaseStatus.FAILED, "failed", True),
    # Not pending or failed, so every scan is done or rejected: rejected = none done. A rejected
    # image beside analysed slices does not relabel the case.
    (CaseStatus.REJECTED, "done", False),
    (CaseStatus.DONE, "done", True),
)


@dataclass(frozen=True)
class CaseFilters:
    """History filters. Build from a query string with `CaseFilters.from_query(request.GET)`."""

    search: str = ""  # patient name or MRN, substring
    patient_id: int | None = None
    date_from: datetime.date | None = None  # case created on or after (inclusive)
    date_to: datetime.date | None = None  # case created on or before (inclusive)
    label: str = ""  # any scan of the case predicted with this label
    status: str = ""  # a CaseStatus value

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> "CaseFilters":
        """Lenient parse: a malformed value is ignored rather than an error page."""

        def _int(value: str | None) -> int | None:
            # Within a BigAutoField's range: a larger id would crash the database driver.
            number = int(value) if value and value.strip().isdigit() else None
            return number if number is not None and number < 2**63 else None

        def _date(value: str | None) -> datetime.date | None:
            try:
                return parse_date(value.strip()) if value else None
            except ValueError:
                return None

        status = (query.get("status") or "").strip()
        return cls(
            search=(query.get("q") or query.get("search") or "").strip(),
            patient_id=_int(query.get("patient")),
            date_from=_date(query.get("date_from")),
            date_to=_date(query.get("date_to")),
            label=(query.get("label") or "").strip(),
            status=status if status in CaseStatus.values else "",
        )


def _scan_count(**conditions: object) -> Coalesce:
    # A correlated subquery, not a JOIN + GROUP BY: the database counts scans only for the rows
    # it returns (one page), and the paginator's COUNT(*) drops these unused annotations.
    scans = Scan.objects.filter(case=OuterRef("pk"), **conditions).order_by().values("case")
    return Coalesce(Subquery(scans.annotate(n=Count("pk")).values("n")), 0)


def _annotated(user: User) -> QuerySet[Case]:
    counts = {name: _scan_count(**conditions) for name, conditions in _SCAN_KINDS.values()}
    *rules, (last, _, _) = CASE_STATUS_RULE
    whens = [
        When(**{f"{_SCAN_KINDS[kind][0]}__gt" if present else _SCAN_KINDS[kind][0]: 0}, then=Value(status.value))
        for status, kind, present in rules
    ]
    return (
        Case.objects.for_clinic(user.clinic_id)
        .select_related("patient", "created_by", "signed_by")
        .annotate(**counts, scans_rejected=_scan_count(status=ScanStatus.REJECTED))
        .annotate(status=SqlCase(*whens, default=Value(last.value)))
    )


def _status_condition(status: str) -> Q:
    """The same rule as the `status` annotation, as EXISTS tests: cheaper than counting every
    case's scans when filtering thousands of cases."""
    wanted = CaseStatus(status)
    earlier = Q()  # none of the lines before the wanted one holds
    for line_status, kind, present in CASE_STATUS_RULE:
        exists = Q(Exists(Scan.objects.filter(case=OuterRef("pk"), **_SCAN_KINDS[kind][1])))
        holds = exists if present else ~exists
        if line_status == wanted:
            return earlier & holds
        earlier &= ~holds
    raise AssertionError(f"{status!r} has no line in CASE_STATUS_RULE")


def _with_scans(queryset: QuerySet[Case]) -> QuerySet[Case]:
    scans = Scan.objects.select_related("prediction", "review", "review__reviewer", "review__addendum").order_by(
        "queued_at", "id"
    )
    return queryset.prefetch_related(Prefetch("scans", queryset=scans))


def case_list(*, user: User, filters: CaseFilters | None = None) -> QuerySet[Case]:
    """The clinic's cases, newest first, each annotated with `scans_total`, `scans_pending`,
    `scans_failed`, `scans_rejected`, `scans_done` and `status` (CaseStatus), its patient joined and its scans
    (with prediction and review) prefetched: `case.scans.all()` costs no query."""
    filters = filters or CaseFilters()
    queryset = _filtered(_annotated(user), filters)
    return _with_scans(queryset).order_by("-created_at", "-id")


def _start_of_day(day: datetime.date) -> datetime.datetime:
    """Midnight opening `day` in the current time zone (where a clinic's days begin)."""
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


def _filtered(queryset: QuerySet[Case], filters: CaseFilters) -> QuerySet[Case]:
    """The history filters, shared by case_list and the worklist."""
    if filters.search:
        queryset = queryset.filter(
            Q(patient__name__icontains=filters.search) | Q(patient__mrn__icontains=filters.search)
        )
    if filters.patient_id is not None:
        queryset = queryset.filter(patient_id=filters.patient_id)
    # A range on the timestamp itself (days in the current time zone), which the created_at
    # indexes serve; created_at__date would compute the date of every row.
    if filters.date_from is not None:
        queryset = queryset.filter(created_at__gte=_start_of_day(filters.date_from))
    if filters.date_to is not None:
        queryset = queryset.filter(created_at__lt=_start_of_day(filters.date_to + datetime.timedelta(days=1)))
    if filters.label:
        # From the case's scans (indexed by case) to their one prediction each.
        queryset = queryset.filter(Exists(Scan.objects.filter(case=OuterRef("pk"), prediction__label=filters.label)))
    if filters.status:
        queryset = queryset.filter(_status_condition(filters.status))
    return queryset


def case_history(*, user: User, filters: CaseFilters | None = None, page: int | str = 1, per_page: int = 25) -> Page:
    """One page of `case_list` (an out-of-range or malformed page number gives the nearest page).

    Four queries whatever the page: count, the page's ids, those cases with their annotations,
    and their scans. Picking ids first keeps the per-case scan counts off the rows an OFFSET
    skips (PostgreSQL computes the select list for skipped rows too).
    """
    cases = case_list(user=user, filters=filters)
    paginator = Paginator(cases.values_list("pk", flat=True), min(max(1, per_page), MAX_PER_PAGE))
    result = paginator.get_page(page)
    ids = list(result.object_list)
    rows = {case.pk: case for case in cases.filter(pk__in=ids)}
    result.object_list = [rows[pk] for pk in ids if pk in rows]
    return result


def case_recent(*, user: User, limit: int = 10) -> list[Case]:
    """The clinic's newest cases, for the dashboard."""
    return list(case_list(user=user)[:limit])


def case_get(*, user: User, case_id: int) -> Case:
    """A case of the user's clinic, annotated and with scans prefetched as in case_list, and its
    addenda with their authors; else Http404."""
    addenda = Prefetch("addenda", queryset=CaseAddendum.objects.select_related("author"))
    case = _with_scans(_annotated(user)).prefetch_related(addenda).filter(pk=case_id).first()
    if case is None:
        raise Http404("No such case.")
    return case


def case_of_clinic(*, user: User, case_id: int) -> Case:
    """A case of the user's clinic, nothing annotated or prefetched (for answers about the case
    that show none of its scans); else Http404."""
    case = Case.objects.for_clinic(user.clinic_id).filter(pk=case_id).first()
    if case is None:
        raise Http404("No such case.")
    return case


def case_reading_summary(*, case: Case) -> str:
    """The reviewed per-scan readings as text, to pre-fill the conclusion at sign-off: one line
    per scan (its reading, what the model said, the note)."""
    lines = []
    for number, scan in enumerate(case.scans.all(), start=1):
        name = scan.original_filename or f"scan {scan.pk}"
        if scan.status != ScanStatus.DONE:
            lines.append(f"{number}. {name}: no model result ({scan.get_status_display().lower()}).")
            continue
        prediction, review = scan.prediction, scan.review
        model = f"model {prediction.label_name} {probability_text(prediction.confidence)} %"
        if review is None:
            lines.append(f"{number}. {name}: not reviewed ({model}).")
            continue
        verdict = "agrees with the model" if review.agrees else f"corrects the model ({model})"
        note = f" Note: {review.note}" if review.note else ""
        lines.append(f"{number}. {name}: {review.label_name}, {verdict}.{note}")
    return "\n".join(lines)


def case_timeline(*, user: User, patient: Patient) -> list[Case]:
    """A patient's cases, newest first, with scans, readings and addenda (priors for the
    radiologist); `patient` came from the clinic-scoped patient_get."""
    addenda = Prefetch("addenda", queryset=CaseAddendum.objects.select_related("author"))
    return list(case_list(user=user, filters=CaseFilters(patient_id=patient.pk)).prefetch_related(addenda))
