"""Reads for scans, always within the user's clinic."""

from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404

from apps.accounts.models import User
from apps.cases.models import Case

from .models import Scan, ScanReview, ScanStatus


def _clinic_scans(user: User) -> QuerySet[Scan]:
    # A deleted case's scans are gone with it (until the retention purge removes them).
    return Scan.objects.filter(case__clinic_id=user.clinic_id, case__deleted_at__isnull=True)


def _history() -> Prefetch:
    """`scan.reviews.all()` without a query per scan: the review history on the scan card."""
    return Prefetch("reviews", queryset=ScanReview.objects.select_related("reviewer").order_by("reviewed_at", "id"))


def scan_get(*, user: User, scan_id: int) -> Scan:
    """A scan of the user's clinic with its case, patient, prediction and review; else Http404."""
    scan = (
        _clinic_scans(user)
        .select_related(
            "case", "case__patient", "uploaded_by", "prediction", "review", "review__reviewer", "review__addendum"
        )
        .prefetch_related(_history())
        .filter(pk=scan_id)
        .first()
    )
    if scan is None:
        raise Http404("No such scan.")
    return scan


def scan_list_for_case(*, case: Case) -> QuerySet[Scan]:
    """A case's scans (the case came from a clinic-scoped selector), oldest first."""
    return case.scans.select_related(
        "prediction", "review", "review__reviewer", "review__addendum", "uploaded_by"
    ).prefetch_related(_history()).order_by(
        "queued_at", "id"
    )


def scan_queue_stats(*, user: User) -> dict[str, int]:
    """How many of the clinic's scans are in each state, in one query (every state present)."""
    counts = dict(_clinic_scans(user).values_list("status").annotate(n=Count("id")).order_by())
    return {status: counts.get(status, 0) for status in ScanStatus.values}


def scan_statuses(*, user: User, scan_ids: list[int]) -> dict[int, str]:
    """Current status of several scans (for live status polling), unknown ids left out."""
    return dict(_clinic_scans(user).filter(pk__in=scan_ids).values_list("pk", "status"))


def scan_review_history(*, scan: Scan) -> QuerySet[ScanReview]:
    """Every review of a scan (which came from a clinic-scoped selector), oldest first: the
    last one is the reading that counts."""
    return scan.reviews.select_related("reviewer", "addendum").order_by("reviewed_at", "id")
