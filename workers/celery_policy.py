"""The one queue policy every task gets, so no task forgets it.

- acks_late + reject_on_worker_lost: a worker killed mid-scan (OOM, node lost) leaves the
  message to be delivered again instead of losing the scan; tasks are idempotent for this.
- soft/hard time limits: a stuck model call cannot hold a GPU worker forever; the soft
  limit raises inside the task so it can record the failure.
- queue "inference": the queue GPU/CPU model workers consume (`celery -Q inference`); routed
  by CELERY_TASK_ROUTES in settings/celery.py (Celery 6 drops the per-task `queue` option).
Prefetch 1 is a worker setting (settings/celery.py) checked in clinic_platform/celery.py.
"""

from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.conf import settings

INFERENCE_QUEUE = "inference"


def inference_task(func: Callable[..., Any] | None = None, **options: Any) -> Any:
    """`@inference_task` or `@inference_task(name=...)`: shared_task with the policy above."""
    policy = {
        "acks_late": True,
        "reject_on_worker_lost": True,
        "soft_time_limit": settings.SCAN_TASK_SOFT_TIME_LIMIT,
        "time_limit": settings.SCAN_TASK_TIME_LIMIT,
        "ignore_result": True,
        **options,
    }
    if func is not None:
        return shared_task(**policy)(func)
    return shared_task(**policy)
