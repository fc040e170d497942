"""The Prometheus endpoints after a real scan: the web's (django-prometheus, /metrics) and the
real worker's (prometheus-client on WORKER_METRICS_PORT) expose the series dashboards and the
autoscaler use."""
from __future__ import annotations

import re

import requests

from tests.testkit.processes import Worker, wait_for_scan
from tests.testkit.scans import real_scan_path


def _value(text: str, series: str) -> float:
    """The value of one series in Prometheus's text format (-1 when absent)."""
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else -1.0


def test_metrics_endpoints_expose_the_named_series_after_a_scan(api, worker: Worker) -> None:
    session, base = api
    patient = session.post(f"{base}/api/patients/", data={"mrn": "E2E-M", "name": "Met Rics"}, timeout=10)
    case = session.post(f"{base}/api/cases/", data={"patient": patient.json()["id"]}, timeout=10)
    path = real_scan_path("pituitary")
    with path.open("rb") as handle:
        files = {"file": (path.name, handle, "image/jpeg")}
        upload = session.post(f"{base}/api/cases/{case.json()['id']}/scans/", files=files, timeout=30)
    scan = wait_for_scan(session, f"{base}/api/scans/{upload.json()['id']}/")
    assert scan["status"] == "done", worker.log_tail()

    assert worker.metrics_port is not None
    text = requests.get(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=10).text
    assert _value(text, 'clinic_scans_analysed_total{status="done"}') >= 1, text[:2000]
    for stage in ("decode", "model", "gradcam", "storage"):
        assert _value(text, f'clinic_analysis_stage_seconds_count{{stage="{stage}"}}') >= 1, stage
    assert re.search(r'^clinic_queue_depth\{queue="inference"\} \d', text, re.M), "queue depth"
    version = scan["prediction"]["model_version"]
    assert re.search(rf'^clinic_model_info\{{version="{re.escape(version)}"\}} 1\.0$', text, re.M)

    web = requests.get(f"{base}/metrics", timeout=10)
    assert web.status_code == 200
    assert "django_http_requests_total_by_view_transport_method_total" in web.text
    assert re.search(r'django_http_responses_total_by_status_total\{status="201"\} [1-9]', web.text)
