"""Files follow their rows: deleting a scan (or its case, which cascades) removes the scan
image, its de-identified DICOM file, heatmaps and overlay from storage once the deletion commits. A rolled-back deletion
keeps them, and a missing file is not an error."""

import logging
from typing import Any

from django.core.files.storage import Storage
from django.db import transaction
from django.db.models.fields.files import FieldFile
from django.db.models.signals import post_delete
from django.dispatch import receiver

from .models import ClassHeatmap, Prediction, Scan, StudyUpload

logger = logging.getLogger(__name__)


def _delete_after_commit(targets: list[tuple[Storage, str]], owner: str) -> None:
    """Delete (storage, name) pairs once the deletion commits; `owner` names the deleted row in the log."""

    def delete() -> None:
        for storage, name in targets:
            try:
                storage.delete(name)
            except OSError:
                logger.warning("could not delete %s after its %s was deleted", name, owner, exc_info=True)

    if targets:
        transaction.on_commit(delete, robust=True)


def _delete_files_after_commit(*files: FieldFile) -> None:
    # Name and storage now: the instance is gone by the time the callback runs.
    _delete_after_commit([(file.storage, file.name) for file in files if file and file.name], "row")


@receiver(post_delete, sender=Scan, dispatch_uid="scans.delete_scan_files")
def delete_scan_files(sender: type[Scan], instance: Scan, **kwargs: Any) -> None:
    _delete_files_after_commit(instance.image, instance.dicom)


@receiver(post_delete, sender=Prediction, dispatch_uid="scans.delete_prediction_files")
def delete_prediction_files(sender: type[Prediction], instance: Prediction, **kwargs: Any) -> None:
    _delete_files_after_commit(instance.heatmap, instance.overlay)


@receiver(post_delete, sender=ClassHeatmap, dispatch_uid="scans.delete_class_heatmap_files")
def delete_class_heatmap_files(sender: type[ClassHeatmap], instance: ClassHeatmap, **kwargs: Any) -> None:
    _delete_files_after_commit(instance.image)


@receiver(post_delete, sender=StudyUpload, dispatch_uid="scans.delete_study_originals")
def delete_study_originals(sender: type[StudyUpload], instance: StudyUpload, **kwargs: Any) -> None:
    """A study purged with its case before a worker unpacked it: its originals (PHI) go too."""
    from django.core.files.storage import default_storage

    names = [source["path"] for source in instance.sources if source.get("path")]
    _delete_after_commit([(default_storage, name) for name in names], "study")
