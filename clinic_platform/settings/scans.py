"""Scan processing: task time limits, retry budget and the stuck-scan sweep."""

from .env import env

# A scan is analysed in seconds; the first one in a worker also loads the model.
SCAN_TASK_SOFT_TIME_LIMIT = env.int("SCAN_TASK_SOFT_TIME_LIMIT", default=240)
SCAN_TASK_TIME_LIMIT = env.int("SCAN_TASK_TIME_LIMIT", default=300)
# Queued this long without being picked up: the message is presumed lost and is sent again.
SCAN_REQUEUE_AFTER_MINUTES = env.float("SCAN_REQUEUE_AFTER_MINUTES", default=5.0)
# After this many started attempts (worker killed mid-scan each time) the scan is failed.
SCAN_MAX_ATTEMPTS = env.int("SCAN_MAX_ATTEMPTS", default=3)
