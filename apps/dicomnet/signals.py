"""Received instances meet their scans: when the worker has unpacked an instance's StudyUpload
(apps/scans/studies.py sends `study_unpacked` inside the transaction creating the scans), each
frame row of it is linked to its scan by frame order, in that same transaction. On the case,
the uploads of one received study make one progress line (`study_progress_groups`)."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from apps.scans.models import Scan, StudyUpload
from apps.scans.studies import study_progress_groups, study_unpacked

from .models import DicomInstance

logger = logging.getLogger(__name__)


@receiver(study_unpacked, dispatch_uid="dicomnet.link_received_instances")
def link_received_instances(sender: Any, study: StudyUpload, scans: list[Scan], **kwargs: Any) -> None:
    frames = list(DicomInstance.objects.filter(upload=study, scan__isnull=True).order_by("frame_number", "id"))
    if not frames:
        return  # an upload from the pages or the API, not from the network
    if len(frames) != len(scans):
        # Linked as far as both go; a frame left without a scan is simply not reported on.
        logger.warning("study upload %s: %d received frame(s) but %d scan(s) unpacked", study.pk, len(frames),
                       len(scans))  # fmt: skip
    for frame, scan in zip(frames, scans, strict=False):
        frame.scan = scan
        frame.save(update_fields=["scan"])


@receiver(study_progress_groups, dispatch_uid="dicomnet.group_received_instances")
def group_received_instances(sender: Any, upload_ids: list[int], **kwargs: Any) -> dict[int, str]:
    """The instances of one received study are one progress line on the case, not one each."""
    rows = DicomInstance.objects.filter(upload_id__in=upload_ids).values_list("upload_id", "study_id").distinct()
    return {upload_id: f"dicom-study-{study_id}" for upload_id, study_id in rows}
