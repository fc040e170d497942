"""The radiologists' worklist: the clinic's analysed cases not yet signed, most urgent first.

Priority: a tumour predicted with low confidence (the model is unsure about something that
matters), or any result on a sequence the model is not validated for (Prediction.validated
False: its "No tumour" is no reassurance), then any tumour, then the rest; oldest first within
each. Filters are the history's (`CaseFilters`) plus confidence (low: either of the first
kind) and "mine" (cases I have started reading).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import Case as SqlCase
from django.db.models import Exists, FloatField, IntegerField, Min, OuterRef, Q, QuerySet, Value, When
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


def _priorities(user: User, ids: list[int] | None = None) -> dict[int, int]:
    """case id → priority for every unsigned case of the clinic with a result (or for `ids`):
    one grouped query over the results (a correlated subquery per case cost seconds on
    PostgreSQL at 10,000 cases)."""
    results = Prediction.objects.filter(
        scan__case__clinic_id=user.clinic_id, scan__case__deleted_at__isnull=True, scan__status=ScanStatus.DONE,
        scan__removed_at__isnull=True,
    )
    if ids is None:
        results = results.filter(scan__case__signed_at__isnull=True)
    else:
        results = results.filter(scan__case_id__in=ids)
    grouped = (
        results.annotate(top=prediction_confidence())
        .values("scan__case_id")
        .annotate(priority=Min(_RESULT_PRIORITY))
        .order_by()
    )
    return dict(grouped.values_list("scan__case_id", "priority"))


def _waiting(user: User) -> QuerySet[Case]:
    """Unsigned cases with nothing still waiting for the model (whether a case has a result at
    all is for _priorities to say)."""
    pending = [ScanStatus.QUEUED, ScanStatus.PROCESSING]
    return Case.objects.filter(clinic_id=user.clinic_id, signed_at__isnull=True).exclude(
        Exists(Scan.objects.filter(case=OuterRef("pk"), status__in=pending))
    )


def _mine(user: User) -> Exists:
    return Exists(ScanReview.objects.filter(scan__case=OuterRef("pk"), scan__removed_at__isnull=True, reviewer=user))


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
    """case id → priority of every unsigned case with a result: pass it to case_worklist_page
    and case_worklist_counts when a page shows both, so it is computed once."""
    return _priorities(user)


def case_worklist_ids(
    *, user: User, filters: WorklistFilters | None = None, priorities: dict[int, int] | None = None
) -> list[int]:
    """The worklist's case ids in order: priority, then oldest first. Two queries whatever the
    clinic's size (the filtered candidates, their priorities); sorted here, a few thousand ids."""
    filters = filters or WorklistFilters()
    candidates = _with_filters(_waiting(user), user, filters).values_list("pk", "created_at")
    priorities = _priorities(user) if priorities is None else priorities
    ordered = sorted((priorities[pk], created, pk) for pk, created in candidates if pk in priorities)
    return [pk for _, _, pk in ordered]


def case_worklist_rows(*, user: User, ids: list[int]) -> list[Case]:
    """The cases of `ids`, in that order, annotated like case_list (scan counts, status) with
    their scans prefetched, and each with `priority` (Priority)."""
    priorities = _priorities(user, ids)
    rows = {case.pk: case for case in _with_scans(_annotated(user)).filter(pk__in=ids)}
    cases = [rows[pk] for pk in ids if pk in rows]
    for case in cases:
        case.priority = priorities.get(case.pk, Priority.OTHER)
    return cases


def case_worklist(*, user: User, filters: WorklistFilters | None = None) -> list[Case]:
    """The whole worklist in order, each case as case_worklist_rows gives it. Pages use
    case_worklist_page (the same order, 25 cases loaded)."""
    return case_worklist_rows(user=user, ids=case_worklist_ids(user=user, filters=filters))


def case_worklist_page(
    *,
    user: User,
    filters: WorklistFilters | None = None,
    page: int | str = 1,
    per_page: int = 25,
    priorities: dict[int, int] | None = None,
) -> Page:
    """One page of the worklist (a malformed or out-of-range number gives the nearest page)."""
    ids = case_worklist_ids(user=user, filters=filters, priorities=priorities)
    result = Paginator(ids, per_page).get_page(page)
    result.object_list = case_worklist_rows(user=user, ids=list(result.object_list))
    return result


def case_worklist_counts(*, user: User, priorities: dict[int, int] | None = None) -> dict[str, int]:
    """How many cases wait, by priority, and how many of them I have started (two queries)."""
    priorities = _priorities(user) if priorities is None else priorities
    waiting = dict(_waiting(user).annotate(mine=_mine(user)).values_list("pk", "mine"))
    counts = {"total": 0, "low_confidence_tumour": 0, "tumour": 0, "other": 0, "mine": 0}
    keys = {Priority.LOW_CONFIDENCE_TUMOUR: "low_confidence_tumour", Priority.TUMOUR: "tumour", Priority.OTHER: "other"}
    for pk, mine in waiting.items():
        if pk not in priorities:
            continue  # nothing analysed yet
        counts["total"] += 1
        counts[keys[priorities[pk]]] += 1
        counts["mine"] += bool(mine)
    return counts
