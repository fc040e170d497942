"""Scan processing: task time limits, retry budget and the stuck-scan sweep."""

from .env import env

# A scan is analysed in seconds; the first one in a worker also loads the model.
SCAN_TASK_SOFT_TIME_LIMIT = env.int("SCAN_TASK_SOFT_TIME_LIMIT", default=240)
SCAN_TASK_TIME_LIMIT = env.int("SCAN_TASK_TIME_LIMIT", default=300)
# Queued this long without being picked up: the message is presumed lost and is sent again.
SCAN_REQUEUE_AFTER_MINUTES = env.float("SCAN_REQUEUE_AFTER_MINUTES", default=5.0)
# After this many started attempts (worker killed mid-scan each time) the scan is failed.
SCAN_MAX_ATTEMPTS = env.int("SCAN_MAX_ATTEMPTS", default=3)

# DICOM ingest (issue 6): zip archives of a study, and the key of the UID replacement.
# The web request reads each zip member (one at a time) to check its header; a worker job
# decodes and de-identifies them (apps/scans/ingest.py).
DICOM_ZIP_MAX_BYTES = env.int("DICOM_ZIP_MAX_BYTES", default=256 * 2**20)
DICOM_ZIP_MAX_MEMBERS = env.int("DICOM_ZIP_MAX_MEMBERS", default=2000)
DICOM_ZIP_MAX_UNCOMPRESSED_BYTES = env.int("DICOM_ZIP_MAX_UNCOMPRESSED_BYTES", default=512 * 2**20)
DICOM_MAX_SLICES_PER_REQUEST = env.int("DICOM_MAX_SLICES_PER_REQUEST", default=1000)
# The decoded size of DICOM pixels (frames × rows × columns × samples × bytes), budgeted from
# the headers in the web request before anything is decoded (issue 15: decompression bombs).
# Per file: what one worker decodes at once (a 200-frame 512² series is 100 MiB; a 16-frame
# 4096² JPEG-LS bomb of 11 KB is 512 MiB). Per request: every file together.
DICOM_MAX_DECODED_BYTES_PER_FILE = env.int("DICOM_MAX_DECODED_BYTES_PER_FILE", default=128 * 2**20)
DICOM_MAX_DECODED_BYTES_PER_REQUEST = env.int("DICOM_MAX_DECODED_BYTES_PER_REQUEST", default=2**30)
# A received study not unpacked by a worker after this long is published again (the sweep).
STUDY_REQUEUE_AFTER_MINUTES = env.float("STUDY_REQUEUE_AFTER_MINUTES", default=5.0)
# Replacement UIDs are a keyed hash of the original: the same study gets the same new UIDs in
# every upload. Unset: derived from DJANGO_SECRET_KEY (rotating that changes new UIDs).
DICOM_UID_KEY = env.str("DICOM_UID_KEY", default="")
# Slices of one study in one task (a DICOM series, or scans_upload(study=True)): one forward/backward
# pass on a GPU worker; on a CPU worker its lanes' chunks, below. 32: a task's start and end (its
# lanes' chunks finishing together, the last results stored while the cores wait) once per 32
# slices, not per 8 (the study bench, docs/operations.md).
SCAN_BATCH_SIZE = env.int("SCAN_BATCH_SIZE", default=32)
# A CPU worker analyses such a task's slices this many at a time, on threads of its own process
# (a second slice uses the core one analyze() leaves idle; docs/operations.md, the study bench).
STUDY_ANALYSIS_LANES = env.int("STUDY_ANALYSIS_LANES", default=2)
# ...and each lane takes this many slices per call (one text check of the chunk's pages,
# one `analyze_batch`): 8 at a time cost 0.70-0.74 of one at a time per slice on the 2-core hosts
# measured (bench/analyze_batch.py; 1 gives the lanes of one slice per call of before).
STUDY_LANE_BATCH = env.int("STUDY_LANE_BATCH", default=8)

# The sweep revives at once a scan left in processing by a worker process of its own host that
# is gone (killed), instead of after the hard time limit (~6.5 min). On by default with the
# filesystem queue of `make run` (one host, and no redelivery: the message left with the dead
# worker); with Redis the broker redelivers, and workers sit on other hosts or pid namespaces.
SCAN_SWEEP_CHECKS_LOCAL_WORKERS = env.bool(
    "SCAN_SWEEP_CHECKS_LOCAL_WORKERS", default=not env.str("REDIS_URL", default="")
)
