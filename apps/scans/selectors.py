"""Reads for scans, always within the user's clinic."""

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404

from apps.accounts.models import User
from apps.cases.models import Case
from mri.vocabulary import LOW_CONFIDENCE, NO_TUMOUR, TUMOUR_CLASSES

from .models import Scan, ScanReview, ScanStatus


def _clinic_scans(user: User) -> QuerySet[Scan]:
    # A deleted case's scans are gone with it (until the retention purge removes them).
    return Scan.objects.for_clinic(user.clinic_id).filter(case__deleted_at__isnull=True)


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


def scan_list_for_case(*, case: Case) -> list[Scan]:
    """A case's scans (the case came from a clinic-scoped selector), oldest first; the slices
    of a DICOM series together, at the place of the series' first upload, in slice order
    (Instance Number, else Image Position), whichever uploads brought them."""
    scans = list(
        case.scans.select_related("prediction", "review", "review__reviewer", "review__addendum", "uploaded_by")
        .prefetch_related(_history())
        .order_by("queued_at", "id")
    )
    first_seen: dict[str, Any] = {}
    for scan in scans:
        if scan.series_uid:
            first_seen.setdefault(scan.series_uid, scan.queued_at)

    def key(scan: Scan) -> tuple:
        if not scan.series_uid:
            return (scan.queued_at, "", 0.0, scan.queued_at, scan.pk)
        order = scan.slice_order if scan.slice_order is not None else 0.0
        return (first_seen[scan.series_uid], scan.series_uid, order, scan.queued_at, scan.pk)

    return sorted(scans, key=key)


TUMOUR_LABELS = TUMOUR_CLASSES
SUPPORTING_SLICES = 5


@dataclass(frozen=True)
class RankedSlice:
    scan: Scan
    tumour_probability: float  # 1 − P(no tumour)
    position: int  # 1-based place in the case's slice order


@dataclass(frozen=True)
class RejectedSlice:
    """A slice the out-of-distribution gate found is not a brain MRI slice (no label)."""

    scan: Scan
    position: int  # 1-based place in the case's slice order


@dataclass(frozen=True)
class StudySummary:
    """A case read as one study: its analysed slices, most suspicious first, and the finding
    the slices point to with the ones that support it. Slices the out-of-distribution gate
    rejected are finished too (`slices_finished`) but carry no label, so they are counted, not
    ranked."""

    ranked: list[RankedSlice]
    finding: str | None  # a CLASS_NAMES label; None until a slice is analysed
    finding_probability: float  # the best supporting slice's probability of the finding
    supporting: list[RankedSlice]
    slices_total: int
    patient_id_mismatches: list[Scan] = field(default_factory=list)
    rejected: list[RejectedSlice] = field(default_factory=list)
    # Slices read as tumour that name different tumour types, the most confident of each type
    # first: no single finding is given for such a study (`finding` is None).
    discordant: list[RankedSlice] = field(default_factory=list)

    @property
    def slices_finished(self) -> int:
        """Slices with an answer: analysed (ranked) or rejected as not a brain MRI slice."""
        return len(self.ranked) + len(self.rejected)

    @property
    def shown(self) -> bool:
        """Worth a summary: a study of several slices, at least one finished."""
        return self.slices_total >= 2 and self.slices_finished > 0

    low_confidence_threshold = LOW_CONFIDENCE

    @property
    def low_confidence(self) -> bool:
        return self.finding_probability < LOW_CONFIDENCE

    @property
    def not_validated(self) -> list[RankedSlice]:
        """Analysed slices on a sequence the model is not validated for, in slice order."""
        return sorted((i for i in self.ranked if i.scan.prediction.not_validated), key=lambda i: i.position)

    @property
    def not_validated_sequences(self) -> list[str]:
        return sorted({item.scan.get_sequence_display() for item in self.not_validated})

    @property
    def mismatched_patient_ids(self) -> list[str]:
        return sorted({scan.source_patient_id for scan in self.patient_id_mismatches})


def case_study_summary(*, case: Case, scans: list[Scan] | None = None) -> StudySummary:
    """Rank the case's analysed slices by tumour probability and name the study's most likely
    finding: the tumour type with the most probability over the slices the model reads as
    tumour (tumour probability ≥ 0.5), or no tumour when no slice is read as tumour. The
    supporting slices are those labelled with that finding, most confident first."""
    scans = scan_list_for_case(case=case) if scans is None else scans
    position = {scan.pk: index + 1 for index, scan in enumerate(scans)}
    ranked = sorted(
        (
            RankedSlice(scan=scan, tumour_probability=float(scan.tumour_probability), position=position[scan.pk])
            for scan in scans
            if scan.status == ScanStatus.DONE and getattr(scan, "prediction", None) is not None
        ),
        key=lambda item: (-item.tumour_probability, item.position),
    )
    mismatches = [scan for scan in scans if scan.patient_id_mismatch]
    rejected = [RejectedSlice(scan, position[scan.pk]) for scan in scans if scan.status == ScanStatus.REJECTED]
    if not ranked:
        return StudySummary([], None, 0.0, [], len(scans), mismatches, rejected)
    suspicious = [item for item in ranked if item.tumour_probability >= 0.5]
    discordant = _discordant(suspicious)
    if discordant:
        return StudySummary(ranked, None, 0.0, [], len(scans), mismatches, rejected, discordant)
    if suspicious:
        weight = {
            label: sum(float(item.scan.prediction.probabilities.get(label, 0.0)) for item in suspicious)
            for label in TUMOUR_LABELS
        }
        finding = max(TUMOUR_LABELS, key=lambda label: weight[label])
    else:
        finding = NO_TUMOUR

    def probability(item: RankedSlice) -> float:
        return float(item.scan.prediction.probabilities.get(finding, 0.0))

    supporting = sorted(
        (item for item in ranked if item.scan.prediction.label == finding), key=lambda item: -probability(item)
    )[:SUPPORTING_SLICES]
    best = probability(supporting[0]) if supporting else max(probability(item) for item in ranked)
    return StudySummary(ranked, finding, best, supporting, len(scans), mismatches, rejected)


def _discordant(suspicious: list[RankedSlice]) -> list[RankedSlice]:
    """The slices read as tumour, when they name more than one tumour type (each slice's own
    label); empty when they agree. Slices read as no tumour beside tumour slices are the usual
    picture of a study, not a disagreement."""
    tumour = [item for item in suspicious if item.scan.prediction.label in TUMOUR_LABELS]
    if len({item.scan.prediction.label for item in tumour}) < 2:
        return []
    return sorted(tumour, key=lambda item: (item.scan.prediction.label, -float(item.scan.prediction.confidence)))


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
