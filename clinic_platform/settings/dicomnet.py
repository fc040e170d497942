"""The DICOM network (apps/dicomnet, docs/pacs.md): the receiver's own AE title and port, and
the outbox that sends results back to the PACS."""

from .celery import CELERY_BEAT_SCHEDULE, CELERY_TASK_ROUTES
from .env import env

DICOM_AE_TITLE = env.str("DICOM_AE_TITLE", default="CLINIC_AI")
DICOM_PORT = env.int("DICOM_PORT", default=11112)
DICOM_BIND_ADDRESS = env.str("DICOM_BIND_ADDRESS", default="0.0.0.0")  # noqa: S104 (a network service)
# Results go back once a study is stable: no instance received for this long (a scanner sends
# series by series; like Orthanc's StableAge). A series arriving later is not reported on.
DICOM_STUDY_STABLE_SECONDS = env.float("DICOM_STUDY_STABLE_SECONDS", default=60.0)
# Outbox: first retry after DICOM_OUTBOX_RETRY_SECONDS, doubling up to the maximum; never given up.
DICOM_OUTBOX_RETRY_SECONDS = env.float("DICOM_OUTBOX_RETRY_SECONDS", default=30.0)
DICOM_OUTBOX_MAX_RETRY_SECONDS = env.float("DICOM_OUTBOX_MAX_RETRY_SECONDS", default=3600.0)
DICOM_OUTBOX_SWEEP_SECONDS = env.float("DICOM_OUTBOX_SWEEP_SECONDS", default=30.0)
DICOM_NETWORK_TIMEOUT = env.float("DICOM_NETWORK_TIMEOUT", default=30.0)

# Sending is network work, never model work: the light "maintenance" queue.
CELERY_TASK_ROUTES["apps.dicomnet.tasks.*"] = {"queue": "maintenance"}
CELERY_BEAT_SCHEDULE["dicom-outbox-sweep"] = {
    "task": "apps.dicomnet.tasks.outbox_sweep",
    "schedule": DICOM_OUTBOX_SWEEP_SECONDS,
    "options": {"expires": DICOM_OUTBOX_SWEEP_SECONDS},
}
