"""Case.worklist_priority follows what it is computed from: a scan's prediction stored or
deleted, a scan saved or deleted (its status), the case signed or reopened. Status changes
made with queryset.update() send no signal; the services that take a scan out of "done" call
worklist_priority_refresh themselves (only a prediction or a sign-off changes the priority).
Inside `worklist_priority_deferred()` (a worker's task) the changed cases are refreshed once,
at its end."""

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.scans.models import Prediction, Scan

from .models import Case
from .worklist import worklist_priority_changed


@receiver([post_save, post_delete], sender=Prediction, dispatch_uid="cases.priority_on_prediction")
def prediction_changed(sender: type[Prediction], instance: Prediction, **kwargs: Any) -> None:
    case_id = Scan.objects.filter(pk=instance.scan_id).values_list("case_id", flat=True).first()
    if case_id is not None:  # a scan deleted with its prediction: the scan's own signal refreshes
        worklist_priority_changed(case_ids=[case_id])


@receiver([post_save, post_delete], sender=Scan, dispatch_uid="cases.priority_on_scan")
def scan_changed(sender: type[Scan], instance: Scan, created: bool = False, **kwargs: Any) -> None:
    if not created:  # a new scan has no result yet: nothing changes
        worklist_priority_changed(case_ids=[instance.case_id])


@receiver(post_save, sender=Case, dispatch_uid="cases.priority_on_sign_off")
def case_changed(
    sender: type[Case], instance: Case, created: bool = False, update_fields: Any = None, **kwargs: Any
) -> None:
    if not created and (update_fields is None or "signed_at" in update_fields):
        worklist_priority_changed(case_ids=[instance.pk])
