"""Class heatmaps: the map of a class other than the predicted one, computed on demand by a worker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from ..labels import MODEL_LABELS
from ..models import ClassHeatmap, Prediction, Scan, ScanStatus
from . import files
from .publishing import class_heatmap_publish
from .transitions import ModelOutputError

# A class heatmap asked for but not finished after this long (a lost message, a worker that
# died) is published again by the next request for it; so is one that failed.
CLASS_HEATMAP_RETRY_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class ClassHeatmapState:
    """What `GET /api/scans/{id}/heatmaps/{label}/` answers: a file, "pending" or "failed"."""

    status: str  # "ready" | "pending" | "failed"
    file: Any = None  # the PNG's FieldFile when ready
    error: str = ""


def scan_class_heatmap(*, scan: Scan, label: str) -> ClassHeatmapState:
    """The heatmap of class `label` for an analysed scan: the prediction's own map for the
    predicted class, a stored one, or a worker task published to compute and store it.

    The caller has already checked the clinic (selectors.scan_get)."""
    if label not in MODEL_LABELS:
        raise ValidationError(f"Unknown class {label!r}; one of: {', '.join(str(m) for m in MODEL_LABELS)}.")
    prediction = getattr(scan, "prediction", None) if scan.status == ScanStatus.DONE else None
    if prediction is None:
        raise ValidationError("This scan has not been analysed yet.")
    if label == prediction.label:
        return ClassHeatmapState("ready", file=prediction.heatmap)
    heatmap, created = ClassHeatmap.objects.get_or_create(prediction=prediction, label=label)
    if heatmap.is_ready:
        return ClassHeatmapState("ready", file=heatmap.image)
    stale = timezone.now() - heatmap.requested_at > CLASS_HEATMAP_RETRY_AFTER
    if heatmap.error and not stale:
        return ClassHeatmapState("failed", error=heatmap.error)
    if created or stale:
        # Claim the publication: of two requests racing on a stale row, one publishes.
        claimed = ClassHeatmap.objects.filter(pk=heatmap.pk, requested_at=heatmap.requested_at).update(
            requested_at=timezone.now(), error=""
        )
        if created or claimed:
            class_heatmap_publish(heatmap_id=heatmap.pk)
    return ClassHeatmapState("pending")


def class_heatmap_complete(*, heatmap: ClassHeatmap, png: bytes, model_version: str) -> bool:
    """Store a computed class heatmap (8-bit gray PNG). False if it was stored already."""
    if not png.startswith(b"\x89PNG"):
        raise ModelOutputError("the class heatmap is not a PNG")
    with transaction.atomic():
        current = ClassHeatmap.objects.select_for_update().filter(pk=heatmap.pk).first()
        if current is None or current.is_ready:
            return False
        with files.removed_on_failure() as written:
            current.image.save(f"heatmap-{current.label}.png", ContentFile(png), save=False)
            written.append(current.image.name)
            current.model_version, current.error, current.finished_at = model_version, "", timezone.now()
            current.save(update_fields=["image", "model_version", "error", "finished_at"])
    return True


def class_heatmap_store(*, prediction: Prediction, label: str, png: bytes, model_version: str) -> bool:
    """Store class `label`'s map computed beside the analysis (the worker, for the class the card
    opens on when it is not the predicted one: Prediction.heatmap_label), so opening the page
    publishes no task. False if it was stored already."""
    heatmap, _created = ClassHeatmap.objects.get_or_create(prediction=prediction, label=label)
    return class_heatmap_complete(heatmap=heatmap, png=png, model_version=model_version)


def class_heatmap_fail(*, heatmap: ClassHeatmap, error: str) -> None:
    ClassHeatmap.objects.filter(pk=heatmap.pk, image="").update(error=error[:2000], finished_at=timezone.now())
