"""The Grafana dashboard (deploy/grafana) plots series that exist: each clinic_* name it queries
is one the workers export (workers/metrics.py), each django_* one is django-prometheus's."""
from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import workers.metrics  # noqa: F401 (registers the worker series)

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "clinic-dashboard.json"


def _exported() -> set[str]:
    """Series names of every registered family, as Prometheus stores them (a family that has
    no sample yet still names its series: counters end in _total, histograms in _bucket...)."""
    from workers.metrics import QueueDepthCollector

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    families = [*REGISTRY.collect(), *QueueDepthCollector("memory://").collect()]
    return {f.name + suffix for f in families for suffix in suffixes.get(f.type, ("",))}


def test_every_series_on_the_dashboard_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\b((?:clinic|django)_[a-z_]+)\b", expr)}
    assert {"clinic_scans_analysed_total", "clinic_queue_depth", "clinic_model_info",
            "clinic_analysis_stage_seconds_bucket"} <= used  # fmt: skip
    from django_prometheus.middleware import Metrics

    Metrics.get_instance()  # registers the web series (created on first use otherwise)

    missing = used - _exported()
    assert not missing, missing
