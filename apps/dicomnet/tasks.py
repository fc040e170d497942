"""Celery tasks of the DICOM network, on the "maintenance" queue (settings/dicomnet.py).
They only orchestrate: apps/dicomnet/outbox.py does the work."""

from __future__ import annotations

from celery import shared_task

from .models import OutboxItem, OutboxState
from .outbox import outbox_due, outbox_plan, outbox_send


@shared_task(acks_late=True, ignore_result=True, name="apps.dicomnet.tasks.send_outbox_item")
def send_outbox_item(item_id: int) -> str:
    """Send one row; after a failure, publish itself again for when the back-off ends (the
    sweep also finds it then, so a lost message loses nothing)."""
    item = outbox_send(item_id)
    if item is not None and item.state == OutboxState.RETRYING:
        send_outbox_item.apply_async(args=[item_id], eta=item.next_attempt_at)
    return item.state if item else "skipped"


@shared_task(ignore_result=True, name="apps.dicomnet.tasks.outbox_sweep")
def outbox_sweep() -> int:
    """Add the rows that are due (finished studies, signed cases) and publish every due row."""
    outbox_plan()
    due = outbox_due()
    for item_id in due:
        send_outbox_item.delay(item_id)
    return len(due)


__all__ = ["OutboxItem", "outbox_sweep", "send_outbox_item"]
