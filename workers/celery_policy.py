"""The one queue policy every task gets, so no task forgets it.

- acks_late + reject_on_worker_lost: a worker killed mid-scan (OOM, node lost) leaves the
  message to be delivered again instead of losing the scan; tasks are idempotent for this.
- soft/hard time limits: a stuck model call cannot hold a GPU worker forever; the soft
  limit raises inside the task so it can record the failure.
- queue "inference": the queue GPU/CPU model workers consume (`celery -Q inference`); routed
  by CELERY_TASK_ROUTES in settings/celery.py (Celery 6 drops the per-task `queue` option).
- queue "maintenance": the sweep (`@maintenance_task`), so it never waits behind scans and
  runs with no model worker; a light worker (`-Q maintenance`, WORKER_PRELOAD_MODEL=0) or a
  model worker with `-Q inference,maintenance` consumes it.
Prefetch 1 is a worker setting (settings/celery.py) checked in clinic_platform/celery.py.
"""

from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.conf import settings

INFERENCE_QUEUE = "inference"
MAINTENANCE_QUEUE = "maintenance"
# The sweep touches rows and publishes messages; a broker outage costs it one connection timeout.
MAINTENANCE_SOFT_TIME_LIMIT = 120
MAINTENANCE_TIME_LIMIT = 180


def inference_task(func: Callable[..., Any] | None = None, **options: Any) -> Any:
    """`@inference_task` or `@inference_task(name=...)`: shared_task with the policy above."""
    policy = {
        "acks_late": True,
        "reject_on_worker_lost": settings.CELERY_TASK_REJECT_ON_WORKER_LOST,  # True unless switched off
        "soft_time_limit": settings.SCAN_TASK_SOFT_TIME_LIMIT,
        "time_limit": settings.SCAN_TASK_TIME_LIMIT,
        "ignore_result": True,
        **options,
    }
    if func is not None:
        return shared_task(**policy)(func)
    return shared_task(**policy)


def maintenance_task(func: Callable[..., Any] | None = None, **options: Any) -> Any:
    """`@maintenance_task`: a periodic chore on the "maintenance" queue (routed in settings).
    Idempotent, so a redelivery or a duplicate is harmless; short time limits."""
    policy = {
        "acks_late": True,
        "reject_on_worker_lost": True,
        "soft_time_limit": MAINTENANCE_SOFT_TIME_LIMIT,
        "time_limit": MAINTENANCE_TIME_LIMIT,
        "ignore_result": True,
        **options,
    }
    if func is not None:
        return shared_task(**policy)(func)
    return shared_task(**policy)
