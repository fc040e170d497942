"""The radiologists' worklist: the clinic's analysed cases not yet signed, most urgent first.

Priority: a tumour predicted with low confidence (the model is unsure about something that
matters), or any result on a sequence the model is not validated for (Prediction.validated
False: its "No tumour" is no reassurance), then any tumour, then the rest; oldest first within
each. Each case stores its priority (Case.worklist_priority, indexed with the clinic and the
date), so the worklist sorts, counts and pages in SQL like the history page. Filters are the
history's (`CaseFilters`) plus confidence (low: either of the first kind) and "mine" (cases I
have started reading).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import Case as SqlCase
from django.db.models import Count, Exists, FloatField, IntegerField, Min, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from apps.accounts.models import User
from apps.scans.labels import MODEL_LABELS, TUMOUR_LABELS
from apps.scans.models import Prediction, Scan, ScanReview, ScanStatus, StudyStatus, StudyUpload
from mri.vocabulary import LOW_CONFIDENCE

from .models import Case
from .selectors import CaseFilters, _annotated, _filtered, _with_scans


class Priority:
    LOW_CONFIDENCE_TUMOUR = 0
    TUMOUR = 1
    OTHER = 2

    NAMES = {0: "Tumour, low confidence", 1: "Tumour", 2: "No tumour"}


CONFIDENCE_CHOICES = [("", "Any confidence"), ("low", "Low confidence"), ("confident", "Confident")]


@dataclass(frozen=True)
class WorklistFilters(CaseFilters):
    confidence: str = ""  # "low": a prediction under LOW_CONFIDENCE; "confident": none
    mine: bool = False  # cases with a scan I reviewed

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> WorklistFilters:
        base = CaseFilters.from_query(query)
        confidence = (query.get("confidence") or "").strip()
        mine = (query.get("mine") or "").strip().lower() in ("1", "true", "yes", "on")
        return cls(
            **{**base.__dict__, "status": ""},  # every worklist case is analysed
            confidence=confidence if confidence in ("low", "confident") else "",
            mine=mine,
        )


def prediction_confidence() -> SqlCase:
    """The top calibrated probability of a Prediction row, in SQL (probabilities[label]):
    JSON key lookups that SQLite and PostgreSQL both run."""
    return SqlCase(
        *[
            When(label=label.value, then=Cast(KeyTextTransform(label.value, "probabilities"), FloatField()))
            for label in MODEL_LABELS
        ],
        output_field=FloatField(),
    )


def _done(**conditions: object) -> QuerySet[Prediction]:
    return Prediction.objects.filter(
        scan__case=OuterRef("pk"), scan__status=ScanStatus.DONE, scan__removed_at__isnull=True, **conditions
    )  # a join does not apply Scan's live manager: removed scans are left out by hand


def _low_confidence(**conditions: object) -> Exists:
    """A result under LOW_CONFIDENCE, or one on a sequence the model is not validated for."""
    return Exists(
        _done(**conditions).annotate(top=prediction_confidence()).filter(Q(top__lt=LOW_CONFIDENCE) | Q(validated=False))
    )


# The rule, per result; a case takes its most urgent result's priority.
_RESULT_PRIORITY = SqlCase(
    When(validated=False, then=Value(Priority.LOW_CONFIDENCE_TUMOUR)),
    When(Q(label__in=TUMOUR_LABELS) & Q(top__lt=LOW_CONFIDENCE), then=Value(Priority.LOW_CONFIDENCE_TUMOUR)),
    When(label__in=TUMOUR_LABELS, then=Value(Priority.TUMOUR)),
    default=Value(Priority.OTHER),
    output_field=IntegerField(),
)


def _case_priority() -> Subquery:
    """The priority of the outer case from its analysed scans' results (NULL: none yet)."""
    results = (
        _done()
        .annotate(top=prediction_confidence())
        .values("scan__case")
        .annotate(priority=Min(_RESULT_PRIORITY))
        .order_by()
        .values("priority")
    )
    return Subquery(results[:1], output_field=IntegerField())


def worklist_priority_refresh(*, case_ids: Iterable[int] | None = None) -> int:
    """Recompute Case.worklist_priority (NULL once signed) of `case_ids`, or of every case:
    one UPDATE. Signals call it when a result or a sign-off changes (apps/cases/signals.py);
    bulk loads (the migration's backfill, bench data) call it once for everything."""
    cases = Case.all_objects.all() if case_ids is None else Case.all_objects.filter(pk__in=list(case_ids))
    return cases.update(
        worklist_priority=SqlCase(When(signed_at__isnull=False, then=Value(None)), default=_case_priority())
    )


# The cases whose priority changed inside `worklist_priority_deferred()`; None outside it.
_deferred: ContextVar[set[int] | None] = ContextVar("worklist_priority_deferred", default=None)


def worklist_priority_changed(*, case_ids: Iterable[int]) -> None:
    """What the signals call: refresh now, or once at the end of `worklist_priority_deferred()`."""
    pending = _deferred.get()
    if pending is None:
        worklist_priority_refresh(case_ids=case_ids)
    else:
        pending.update(case_ids)


@contextmanager
def worklist_priority_deferred() -> Iterator[None]:
    """Refresh the priority of the cases changed inside once, on the way out (even after an
    error: what was committed counts), not once per signal: a worker's study batch stores a
    prediction and a status per slice, two refreshes each otherwise. Nested: the outermost
    refreshes."""
    if _deferred.get() is not None:
        yield
        return
    pending: set[int] = set()
    token = _deferred.set(pending)
    try:
        yield
    finally:
        _deferred.reset(token)
        if pending:
            worklist_priority_refresh(case_ids=sorted(pending))


def _waiting(user: User) -> QuerySet[Case]:
    """Unsigned cases with a result that a radiologist can sign now: nothing still waiting for
    the model or for a person's decision (a held scan), no DICOM study still to unpack
    (case_sign refuses all of these)."""
    # NOT IN uncorrelated subqueries (the few cases with a scan in flight, found by the status
    # index) instead of an EXISTS probe per case: the database runs each once.
    pending = Scan.objects.filter(status__in=ScanStatus.PENDING).values("case_id")
    unpacking = StudyUpload.objects.filter(status__in=StudyStatus.IN_FLIGHT).values("case_id")
    return (
        Case.objects.for_clinic(user.clinic_id).filter(signed_at__isnull=True, worklist_priority__isnull=False)
        .exclude(pk__in=pending)
        .exclude(pk__in=unpacking)
    )


def _mine(user: User) -> Q:
    """Cases with a scan I reviewed: IN one uncorrelated subquery (run once, not per case)."""
    return Q(pk__in=ScanReview.objects.filter(reviewer=user, scan__removed_at__isnull=True).values("scan__case_id"))


def _with_filters(queryset: QuerySet[Case], user: User, filters: WorklistFilters) -> QuerySet[Case]:
    queryset = _filtered(queryset, filters)
    if filters.confidence == "low":
        queryset = queryset.filter(_low_confidence())
    elif filters.confidence == "confident":
        queryset = queryset.exclude(_low_confidence())
    if filters.mine:
        queryset = queryset.filter(_mine(user))
    return queryset


def case_worklist_priorities(*, user: User) -> dict[int, int]:
    """case id → priority of every unsigned case with a result (the stored priorities)."""
    return dict(_waiting(user).values_list("pk", "worklist_priority"))


def case_worklist_ids(
    *, user: User, filters: WorklistFilters | None = None, priorities: dict[int, int] | None = None
) -> QuerySet:
    """The worklist's case ids in order: priority, then oldest first, as a lazy query (a
    paginator counts it and reads one page of it; the stored, indexed priority sorts it in
    SQL). `priorities` is accepted for callers of the per-request version and not needed."""
    filters = filters or WorklistFilters()
    ordered = _with_filters(_waiting(user), user, filters).order_by("worklist_priority", "created_at", "pk")
    return ordered.values_list("pk", flat=True)


def case_worklist_rows(*, user: User, ids: list[int]) -> list[Case]:
    """The cases of `ids`, in that order, annotated like case_list (scan counts, status) with
    their scans prefetched, and each with `priority` (Priority)."""
    rows = {case.pk: case for case in _with_scans(_annotated(user)).filter(pk__in=ids)}
    cases = [rows[pk] for pk in ids if pk in rows]
    for case in cases:
        case.priority = Priority.OTHER if case.worklist_priority is None else case.worklist_priority
    return cases


def case_worklist(*, user: User, filters: WorklistFilters | None = None) -> list[Case]:
    """The whole worklist in order, each case as case_worklist_rows gives it. Pages use
    case_worklist_page (the same order, 25 cases loaded)."""
    return case_worklist_rows(user=user, ids=list(case_worklist_ids(user=user, filters=filters)))


def case_worklist_page(
    *,
    user: User,
    filters: WorklistFilters | None = None,
    page: int | str = 1,
    per_page: int = 25,
    priorities: dict[int, int] | None = None,
    total: int | None = None,
) -> Page:
    """One page of the worklist (a malformed or out-of-range number gives the nearest page).
    `total`: the unfiltered worklist's size when the caller has it (case_worklist_counts), which
    saves the paginator counting the same rows again."""
    filters = filters or WorklistFilters()
    ids = case_worklist_ids(user=user, filters=filters)
    paginator = Paginator(ids, per_page)
    if total is not None and filters == WorklistFilters():
        paginator.count = total  # a cached_property: set, it is not computed
    result = paginator.get_page(page)
    result.object_list = case_worklist_rows(user=user, ids=list(result.object_list))
    return result


def case_worklist_counts(*, user: User, priorities: dict[int, int] | None = None) -> dict[str, int]:
    """How many cases wait, by priority, and how many of them I have started (one query)."""
    return _waiting(user).aggregate(
        total=Count("pk"),
        low_confidence_tumour=Count("pk", filter=Q(worklist_priority=Priority.LOW_CONFIDENCE_TUMOUR)),
        tumour=Count("pk", filter=Q(worklist_priority=Priority.TUMOUR)),
        other=Count("pk", filter=Q(worklist_priority=Priority.OTHER)),
        mine=Count("pk", filter=_mine(user)),
    )
