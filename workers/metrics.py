"""Prometheus metrics of a worker process (prometheus-client), served on WORKER_METRICS_PORT.

- `clinic_scans_analysed_total{status}`: scans a worker finished with each outcome (done,
  rejected by the out-of-distribution gate, failed, retry, skipped, superseded);
- `clinic_analysis_stage_seconds{stage}`: a histogram per stage of one scan: decode (decoding
  and preprocessing), model (forward + Grad-CAM gradient; a batch's time shared by its slices),
  gradcam (maps, overlay PNG) and storage (reading the upload, writing the results);
- `clinic_queue_depth{queue}`: messages waiting in each Celery queue on Redis, read at scrape
  time (the number KEDA scales workers on);
- `clinic_model_info{version}`: 1 for the model this process holds (set at load and by each result).

Each model worker runs one pool process (concurrency 1, as deployed), which serves its own
metrics; the web's metrics are django-prometheus's at /metrics.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

QUEUES = ("inference", "maintenance")
SCANS_ANALYSED = Counter("clinic_scans_analysed", "Scans a worker finished, by outcome", ["status"])
STAGE_SECONDS = Histogram(
    "clinic_analysis_stage_seconds",
    "Time of each stage of one scan's analysis",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
MODEL_INFO = Gauge("clinic_model_info", "The model version this worker process holds and analyses with", ["version"])
# timings_ms keys of an AnalysisResult → the stage they belong to.
_STAGE_OF = {
    "decode": "decode",
    "preprocess": "decode",
    "inference": "model",
    "ood": "model",  # the out-of-distribution score of the pass's pooled features
    "gradcam_and_overlay": "gradcam",
    "tumour_heatmap": "gradcam",  # the map an unreassuring "No tumour" opens on
}


def scan_finished(outcome: str) -> None:
    SCANS_ANALYSED.labels(status=outcome).inc()


@contextlib.contextmanager
def stage(name: str, slices: int = 1) -> Iterator[None]:
    """Time one stage; of `slices` scans at once (a batch), each observes its share."""
    started = time.perf_counter()
    try:
        yield
    finally:
        share = (time.perf_counter() - started) / max(slices, 1)
        for _ in range(max(slices, 1)):
            STAGE_SECONDS.labels(stage=name).observe(share)


def observe_timings(timings_ms: Mapping[str, float] | None) -> None:
    """The analyzer's own timings of one scan, summed per stage."""
    per_stage: dict[str, float] = {}
    for key, ms in (timings_ms or {}).items():
        if key in _STAGE_OF:
            per_stage[_STAGE_OF[key]] = per_stage.get(_STAGE_OF[key], 0.0) + float(ms)
    for name, ms in per_stage.items():
        STAGE_SECONDS.labels(stage=name).observe(ms / 1000)


def model_loaded(analyzer: Any) -> None:
    model_version(str(analyzer.model_version))


def model_version(version: str) -> None:
    """The model a worker holds (at load) and the one its last result came from."""
    MODEL_INFO.labels(version=version).set(1)


class QueueDepthCollector(Collector):
    """LLEN of each queue's Redis list at scrape time (kombu's list for a queue is its name)."""

    def __init__(self, broker_url: str, queues: tuple[str, ...] = QUEUES) -> None:
        self.broker_url, self.queues = broker_url, queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("clinic_queue_depth", "Messages waiting in each queue", labels=["queue"])
        if self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            try:
                client = redis.Redis.from_url(self.broker_url, socket_timeout=2)
                for queue in self.queues:
                    family.add_metric([queue], float(client.llen(queue)))
            except redis.RedisError:
                logger.warning("queue depth: Redis unreachable", exc_info=True)
        yield family


_served = False


def serve(port: int, broker_url: str) -> bool:
    """Start the metrics HTTP server of this process (once). False if the port is taken."""
    global _served
    if _served:
        return True
    try:
        start_http_server(port, addr=os.environ.get("WORKER_METRICS_ADDR", "0.0.0.0"))  # noqa: S104 (scraped in-cluster)
    except OSError:
        logger.warning("worker metrics: port %s is taken; not serving metrics", port, exc_info=True)
        return False
    REGISTRY.register(QueueDepthCollector(broker_url))
    _served = True
    logger.info("worker metrics on :%s/metrics", port)
    return True
