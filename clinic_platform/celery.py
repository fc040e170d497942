"""The Celery app. Settings come from Django settings with the CELERY_ prefix
(clinic_platform/settings/celery.py); tasks live in workers/tasks.py."""

import logging
import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_platform.settings")

app = Celery("clinic_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
# workers/ is not a Django app, so autodiscovery would miss it.
app.conf.imports = ("workers.tasks", "apps.dicomnet.tasks")


@worker_init.connect
def _refuse_wrong_prefetch(sender, **kwargs) -> None:
    # One model per worker process, one scan at a time: a prefetched scan would sit behind a
    # running one while another worker idles, so a misconfigured worker must not start.
    # The worker's own value includes a `--prefetch-multiplier` given on the command line.
    multiplier = getattr(sender, "prefetch_multiplier", None) or sender.app.conf.worker_prefetch_multiplier
    if multiplier != 1:
        # SystemExit, because Celery logs and swallows an Exception raised by a signal handler.
        raise SystemExit(f"worker_prefetch_multiplier must be 1 for model workers, got {multiplier}")


@worker_process_init.connect
def _load_model_before_the_first_scan(**kwargs) -> None:
    # Each pool process loads the model once, when it starts, so the first scan does not wait
    # for it and a broken model shows in the worker log at start, not as a failed scan.
    # WORKER_PRELOAD_MODEL=0 skips it (workers that run only the sweep).
    if os.environ.get("WORKER_METRICS_PORT"):
        from workers.metrics import serve

        serve(int(os.environ["WORKER_METRICS_PORT"]), app.conf.broker_url)
    if os.environ.get("WORKER_PRELOAD_MODEL", "1") == "0":
        return
    from workers.metrics import model_loaded
    from workers.runtime import get_analyzer

    try:
        model_loaded(get_analyzer())
    except Exception:
        # Keep the process: each scan then fails with the loader's message instead of the
        # pool restarting this process in a loop.
        logging.getLogger(__name__).exception("could not load the model at worker start")
