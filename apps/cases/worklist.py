"""The radiologists' worklist: the clinic's analysed cases not yet signed, most urgent first.

Priority: a tumour predicted with low confidence (the model is unsure about something that
matters), then any tumour, then the rest; oldest first within each. Filters are the history's
(`CaseFilters`) plus confidence and "mine" (cases I have started reading).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import Case as SqlCase
from django.db.models import Count, Exists, FloatField, IntegerField, OuterRef, QuerySet, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from apps.accounts.models import User
from apps.scans.labels import MODEL_LABELS, TUMOUR_LABELS
from apps.scans.models import Prediction, Scan, ScanReview, ScanStatus
from workers.inference import LOW_CONFIDENCE

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
    return Prediction.objects.filter(scan__case=OuterRef("pk"), scan__status=ScanStatus.DONE, **conditions)


def _predictions(**conditions: object) -> Exists:
    return Exists(_done(**conditions))


def _low_confidence(**conditions: object) -> Exists:
    return Exists(_done(**conditions).annotate(top=prediction_confidence()).filter(top__lt=LOW_CONFIDENCE))


def _waiting(queryset: QuerySet[Case]) -> QuerySet[Case]:
    """Analysed (at least one result, none still waiting for the model) and not signed, with
    `priority` annotated."""
    pending = [ScanStatus.QUEUED, ScanStatus.PROCESSING]
    return (
        queryset.filter(signed_at__isnull=True)
        .filter(_predictions())
        .exclude(Exists(Scan.objects.filter(case=OuterRef("pk"), status__in=pending)))
        .annotate(
            priority=SqlCase(
                When(_low_confidence(label__in=TUMOUR_LABELS), then=Value(Priority.LOW_CONFIDENCE_TUMOUR)),
                When(_predictions(label__in=TUMOUR_LABELS), then=Value(Priority.TUMOUR)),
                default=Value(Priority.OTHER),
                output_field=IntegerField(),
            )
        )
    )


def _worklist_queryset(user: User) -> QuerySet[Case]:
    return _waiting(_annotated(user))


def _with_filters(queryset: QuerySet[Case], user: User, filters: WorklistFilters) -> QuerySet[Case]:
    queryset = _filtered(queryset, filters)
    if filters.confidence == "low":
        queryset = queryset.filter(_low_confidence())
    elif filters.confidence == "confident":
        queryset = queryset.exclude(_low_confidence())
    if filters.mine:
        queryset = queryset.filter(Exists(ScanReview.objects.filter(scan__case=OuterRef("pk"), reviewer=user)))
    return queryset


ORDER = ("priority", "created_at", "id")


def case_worklist(*, user: User, filters: WorklistFilters | None = None) -> QuerySet[Case]:
    """The worklist in order (priority, then oldest first), scans prefetched as in case_list,
    each case annotated with `priority` (Priority) besides case_list's annotations. For pages,
    paginate `case_worklist_ids` and load the page with `case_worklist_rows`: this queryset
    computes every case's scan counts before sorting."""
    filters = filters or WorklistFilters()
    return _with_scans(_with_filters(_worklist_queryset(user), user, filters)).order_by(*ORDER)


def case_worklist_ids(*, user: User, filters: WorklistFilters | None = None) -> QuerySet:
    """The worklist's case ids in order, without the per-case scan counts: cheap to sort and
    count over thousands of cases, so it is what pages paginate (as case_history does)."""
    filters = filters or WorklistFilters()
    cases = _waiting(Case.objects.filter(clinic_id=user.clinic_id))
    return _with_filters(cases, user, filters).order_by(*ORDER).values_list("pk", flat=True)


def case_worklist_rows(*, user: User, ids: list[int]) -> list[Case]:
    """The cases of one page of ids, in the ids' order, annotated and prefetched like case_worklist."""
    rows = {case.pk: case for case in _with_scans(_worklist_queryset(user)).filter(pk__in=ids)}
    return [rows[pk] for pk in ids if pk in rows]


def case_worklist_page(
    *, user: User, filters: WorklistFilters | None = None, page: int | str = 1, per_page: int = 25
) -> Page:
    """One page of the worklist (a malformed or out-of-range number gives the nearest page)."""
    result = Paginator(case_worklist_ids(user=user, filters=filters), per_page).get_page(page)
    result.object_list = case_worklist_rows(user=user, ids=list(result.object_list))
    return result


def case_worklist_counts(*, user: User) -> dict[str, int]:
    """How many cases wait, by priority, and how many of them I have started: one query."""
    mine = Exists(ScanReview.objects.filter(scan__case=OuterRef("pk"), reviewer=user))
    cases = _waiting(Case.objects.filter(clinic_id=user.clinic_id)).annotate(mine=mine)
    rows = cases.values("priority", "mine").annotate(n=Count("pk")).order_by()
    counts = {"total": 0, "low_confidence_tumour": 0, "tumour": 0, "other": 0, "mine": 0}
    keys = {Priority.LOW_CONFIDENCE_TUMOUR: "low_confidence_tumour", Priority.TUMOUR: "tumour", Priority.OTHER: "other"}
    for row in rows:
        counts["total"] += row["n"]
        counts[keys[row["priority"]]] += row["n"]
        if row["mine"]:
            counts["mine"] += row["n"]
    return counts
