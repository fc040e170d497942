"""The Celery app. Settings come from Django settings with the CELERY_ prefix
(clinic_platform/settings/celery.py); tasks live in workers/tasks.py."""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_platform.settings")

app = Celery("clinic_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
# workers/ is not a Django app, so autodiscovery would miss it.
app.conf.imports = ("workers.tasks",)


@worker_init.connect
def _refuse_wrong_prefetch(sender, **kwargs) -> None:
    # One model per worker process, one scan at a time: a prefetched scan would sit behind a
    # running one while another worker idles, so a misconfigured worker must not start.
    # The worker's own value includes a `--prefetch-multiplier` given on the command line.
    multiplier = getattr(sender, "prefetch_multiplier", None) or sender.app.conf.worker_prefetch_multiplier
    if multiplier != 1:
        # SystemExit, because Celery logs and swallows an Exception raised by a signal handler.
        raise SystemExit(f"worker_prefetch_multiplier must be 1 for model workers, got {multiplier}")
