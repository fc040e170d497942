"""Presentation-only helpers for the page templates (formatting, no queries)."""
from __future__ import annotations

import datetime

from django import template

from apps.cases.models import CaseStatus
from apps.scans.labels import READING_CHOICES, Label, probability_text
from apps.scans.services import gate_decimals

register = template.Library()


@register.filter
def percent(value: float | None, digits: int = 1) -> str:
    """0.8734 → "87.3" (no % sign, so it also fits a CSS width)."""
    if value is None:
        return ""
    return f"{float(value) * 100:.{int(digits)}f}"


@register.simple_tag
def elapsed(start: datetime.datetime | None, end: datetime.datetime | None) -> str:
    """A short human duration between two timestamps: "850 ms", "4.2 s", "3 min 5 s"."""
    if start is None or end is None:
        return "—"
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


@register.filter
def ms(value: float | int | None) -> str:
    """A model timing in milliseconds, formatted for a table cell."""
    if value is None:
        return "—"
    value = float(value)
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


@register.filter
def gate_pair(score: float, threshold: float) -> str:
    """A scan's out-of-distribution score against the threshold it was held to, with as many
    decimals as tell them apart (services.gate_decimals), as the rejection message says them."""
    digits = gate_decimals(score, threshold)
    return f"{score:.{digits}f} (higher is less like them; rejected above {threshold:.{digits}f})"


# The worker's timing keys (mri/model/analyzer.py) said in words; an unknown key is humanised.
_TIMING_WORDS = {
    "decode": "Reading the image",
    "preprocess": "Preparing the image",
    "inference": "Running the model",
    "ood": "Checking it is a brain MRI",
    "gradcam": "Drawing the heatmap",
    "gradcam_and_overlay": "Drawing the heatmap",
    "overlay": "Drawing the overlay",
    "tumour_heatmap": "Drawing the likeliest tumour's heatmap",
}


@register.filter
def timing_words(value: str) -> str:
    """A timing key ("gradcam_ms", "ood") as words a clinician reads ("Drawing the heatmap")."""
    key = str(value).removesuffix("_ms")
    return _TIMING_WORDS.get(key) or humanize_key(key)


@register.filter
def ago(value: datetime.datetime | None) -> str:
    """"just now" under a minute, else "5 minutes ago" (Django's timesince said "0 minutes")."""
    if value is None:
        return ""
    from django.utils import timezone
    from django.utils.timesince import timesince

    if (timezone.now() - value).total_seconds() < 60:
        return "just now"
    return f"{timesince(value)} ago"


@register.simple_tag
def prediction_summary(case: object) -> str:
    """A case's analysed scans as "Glioma ×3, No tumour" (most frequent first), from the
    prefetched scans: one name per label rather than one per scan."""
    counts: dict[str, int] = {}
    for scan in case.scans.all():
        if scan.status == "done" and getattr(scan, "prediction", None) is not None:
            counts[scan.prediction.label] = counts.get(scan.prediction.label, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], Label.name_of(item[0])))
    return ", ".join(Label.name_of(label) + (f" ×{n}" if n > 1 else "") for label, n in ordered)


# A scan's status as said on its badge: "done" reads "analysed".
_SCAN_STATUS_WORDS = {"done": "Analysed", "processing": "Analysing", "queued": "Queued"}


@register.filter
def scan_status_label(scan: object) -> str:
    return _SCAN_STATUS_WORDS.get(scan.status) or scan.get_status_display()


@register.filter
def humanize_key(value: str) -> str:
    """timings_ms keys such as "gradcam_ms" or "decode" → "Gradcam", "Decode"."""
    text = str(value).removesuffix("_ms").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


@register.filter
def case_status_label(value: str) -> str:
    """The annotated case status ("pending") as its display label ("In progress")."""
    try:
        return str(CaseStatus(value).label)
    except ValueError:
        return str(value)


# Case statuses drawn with the scan badge colours: in progress like processing, empty like queued.
_CASE_BADGE = {CaseStatus.PENDING: "processing", CaseStatus.EMPTY: "queued"}


@register.filter
def case_badge(value: str) -> str:
    """The badge CSS class for an annotated case status."""
    return _CASE_BADGE.get(value, str(value))


@register.filter
def label_name(value: str) -> str:
    """Stored label ("notumor") → the name shown everywhere ("No tumour"): labels.Label."""
    return Label.name_of(str(value))


@register.filter
def probability(value: float | None) -> str:
    """A probability for reading, in percent, never "100.0" or "0.0" (labels.probability_text)."""
    return probability_text(value)


@register.filter
def get_item(mapping: dict, key: object) -> object:
    """mapping[key] in a template (None when absent)."""
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.simple_tag
def reviewed_count(case: object) -> int:
    """How many of a case's prefetched scans have a reading (no query)."""
    return sum(1 for scan in case.scans.all() if scan.review_id is not None)


@register.simple_tag
def reading_choices() -> list[tuple[str, str]]:
    """(value, name) of every reading a radiologist can give (labels.READING_CHOICES)."""
    return READING_CHOICES
