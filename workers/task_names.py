"""The Celery tasks' pinned names (issue 17): queued messages and beat entries name a task by
this string, so moving a module never strands them. The web publishes by name
(apps/scans/services/publishing.py) and so never imports the tasks' module, which imports the
services: no import cycle between the two."""

ANALYZE_SCAN = "workers.tasks.analyze_scan"
ANALYZE_SCANS = "workers.tasks.analyze_scans"
INGEST_STUDY = "workers.tasks.ingest_study"
EXPLAIN_SCAN = "workers.tasks.explain_scan"
REQUEUE_STALE_SCANS = "workers.tasks.requeue_stale_scans"
PURGE_DELETED_CASES = "workers.tasks.purge_deleted_cases"
