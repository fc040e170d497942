"""Celery. Docs: https://docs.celeryq.dev/en/stable/userguide/configuration.html

Redis when REDIS_URL is set; otherwise Celery's filesystem transport under var/queue, so a
laptop runs web + worker + beat with no server. Policy (acks_late, time limits) lives
in workers/celery_policy.py so every task gets it; the queues are routed below.
"""

from pathlib import Path

from .env import VAR_DIR, env

REDIS_URL = env.str("REDIS_URL", default="")
QUEUE_DIR = Path(env.str("CELERY_QUEUE_DIR", default=str(VAR_DIR / "queue")))

if REDIS_URL:
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Longer than the hard time limit, or Redis re-delivers a task a worker is still on. A
        # message whose worker vanished (killed main process, lost node) is delivered again
        # after this long. (The fault-injection test shortens it.)
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    }
else:
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
    _messages = QUEUE_DIR / "messages"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_messages),
        "data_folder_out": str(_messages),
        "processed_folder": str(QUEUE_DIR / "processed"),
        # Exchange tables; kombu's default is ./control, relative to wherever a process starts.
        "control_folder": str(QUEUE_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem"):
        for _folder in (_messages, QUEUE_DIR / "processed", QUEUE_DIR / "control"):
            _folder.mkdir(parents=True, exist_ok=True)

# Results live in the database (Scan/Prediction rows), not in a result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# Scans go to the queue the model workers consume (`celery worker -Q inference`). The sweep
# goes to its own "maintenance" queue, so it never waits behind a backlog of scans and runs
# even with no model worker up: a light worker (`-Q maintenance --concurrency 1` with
# WORKER_PRELOAD_MODEL=0) or a model worker started with `-Q inference,maintenance` takes it.
# An exact task name wins over the glob (Celery's MapRoute looks names up first).
CELERY_TASK_DEFAULT_QUEUE = "inference"
CELERY_TASK_ROUTES = {
    "workers.tasks.requeue_stale_scans": {"queue": "maintenance"},
    "workers.tasks.purge_deleted_cases": {"queue": "maintenance"},
    "workers.tasks.*": {"queue": "inference"},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A model worker takes one scan at a time; a prefetched scan would wait behind it while
# another worker idles. workers/celery_policy.py refuses to start a worker without this.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A pool process loads the model before it reports "up" (clinic_platform/celery.py): that takes
# seconds to a minute on a busy CPU host. Celery's default patience is 4 s, after which it kills
# the process and starts another, forever: a worker whose pool process died once (OOM, a kill)
# never analysed another scan. Found by tests/e2e/test_fault_injection.py.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env.float("CELERY_WORKER_PROC_ALIVE_TIMEOUT", default=300.0)
CELERY_TASK_ACKS_LATE = True
# A pool process killed mid-task (OOM, a crash) puts its message back instead of losing it.
# Off only to show what it protects (tests/e2e/test_fault_injection.py's control run).
CELERY_TASK_REJECT_ON_WORKER_LOST = env.bool("CELERY_TASK_REJECT_ON_WORKER_LOST", default=True)
# A web request must not hang while the broker is down: fail fast, the sweep re-enqueues.
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY = False
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = env.str("CELERY_BEAT_SCHEDULE_FILENAME", default=str(VAR_DIR / "celerybeat-schedule"))
SCAN_SWEEP_INTERVAL_SECONDS = env.float("SCAN_SWEEP_INTERVAL_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-scans": {
        "task": "workers.tasks.requeue_stale_scans",
        "schedule": SCAN_SWEEP_INTERVAL_SECONDS,
        # With no maintenance worker up, sweeps pile up in the queue; one that waited a whole
        # period is dropped (the next one does the same work) instead of all running at once.
        "options": {"expires": SCAN_SWEEP_INTERVAL_SECONDS},
    },
    # Soft-deleted cases past their retention (settings/security.py CASE_RETENTION_DAYS).
    "purge-deleted-cases": {
        "task": "workers.tasks.purge_deleted_cases",
        "schedule": env.float("CASE_PURGE_INTERVAL_SECONDS", default=3600.0),
        "options": {"expires": env.float("CASE_PURGE_INTERVAL_SECONDS", default=3600.0)},
    },
}
# JSON logs: Celery's workers keep the root logger the settings configured (LOGGING) instead of
# installing their own plain one.
CELERY_WORKER_HIJACK_ROOT_LOGGER = env.str("LOG_FORMAT", default="plain") != "json"
