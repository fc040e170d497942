"""Celery task names are pinned (`name=` on every task): queued messages and beat entries name a
task by this string, so moving or renaming a module must not change it (issue 17)."""
from __future__ import annotations

import pytest
from django.conf import settings

from apps.dicomnet import tasks as dicomnet_tasks
from workers import tasks

PINNED = {
    tasks.analyze_scan: "workers.tasks.analyze_scan",
    tasks.analyze_scans: "workers.tasks.analyze_scans",
    tasks.ingest_study: "workers.tasks.ingest_study",
    tasks.explain_scan: "workers.tasks.explain_scan",
    tasks.requeue_stale_scans: "workers.tasks.requeue_stale_scans",
    tasks.purge_deleted_cases: "workers.tasks.purge_deleted_cases",
    dicomnet_tasks.send_outbox_item: "apps.dicomnet.tasks.send_outbox_item",
    dicomnet_tasks.outbox_sweep: "apps.dicomnet.tasks.outbox_sweep",
}


@pytest.mark.parametrize(("task", "name"), PINNED.items(), ids=PINNED.values())
def test_task_name_is_pinned(task, name):
    assert task.name == name


def test_every_task_is_listed():
    """A new task gets a pinned name and a line above."""
    from celery import current_app

    ours = {name for name in current_app.tasks if name.startswith(("workers.", "apps."))}
    assert ours == set(PINNED.values())


def test_beat_entries_name_pinned_tasks():
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        if entry["task"].startswith(("workers.", "apps.")):
            assert entry["task"] in PINNED.values()
