"""GET /api/scans/{id}/heatmaps/{label}/: any class's heatmap, computed once by the explain_scan
task and kept. The task runs in-process with the model stand-in (tests.testkit.data.PixelAnalyzer): the
endpoint, the service and the task are under test. Isolation: tests/apps/test_isolation.py."""

import dataclasses
import io
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from apps.audit.models import AuditEvent
from apps.scans.models import ClassHeatmap, Scan
from apps.scans.services import scans_upload
from mri.model.overlays import encode_heatmap_png
from tests.testkit.data import PixelAnalyzer, stored_files, upload
from tests.testkit.scans import png_bytes
from workers import tasks


@pytest.fixture
def analyzer(monkeypatch):
    stand_in = PixelAnalyzer()
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: stand_in)
    return stand_in


def _url(scan, label: str) -> str:
    return reverse("api:scan-heatmap", kwargs={"scan_id": scan.pk, "label": label})


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_predicted_class_is_the_stored_heatmap_and_the_download_is_audited(north, client):
    client.force_login(north.staff)
    label = north.scan.prediction.label
    response = client.get(_url(north.scan, label))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert {"no-store", "private"} <= {p.strip() for p in response["Cache-Control"].split(",")}
    assert _body(response) == north.scan.prediction.heatmap.open("rb").read()
    event = AuditEvent.objects.latest("id")
    assert (event.action, event.object_id, event.actor_username, event.detail) == (
        "download",
        str(north.scan.pk),
        north.staff.username,
        f"heatmap:{label}",
    )


def test_other_class_is_computed_by_a_task_once_then_served(
    north, client, broker, analyzer, django_capture_on_commit_callbacks
):
    client.force_login(north.staff)
    with django_capture_on_commit_callbacks(execute=True):
        first = client.get(_url(north.scan, "pituitary"))
    assert first.status_code == 202
    assert first["Retry-After"] == "1"
    assert first.json()["status"] == "pending"
    (message,) = broker()
    assert message.task == "workers.tasks.explain_scan"
    heatmap = ClassHeatmap.objects.get(prediction=north.scan.prediction, label="pituitary")
    assert message.args == [heatmap.pk]

    # Asked again while it is computed: still pending, and no second task.
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get(_url(north.scan, "pituitary")).status_code == 202
    assert broker() == []

    assert tasks.explain_scan(heatmap.pk) == "done"
    assert tasks.explain_scan(heatmap.pk) == "skipped"  # a duplicate message does nothing
    served = client.get(_url(north.scan, "pituitary"))
    assert served.status_code == 200
    expected = analyzer.explain(north.scan.image.open("rb").read(), "pituitary")
    assert _body(served) == encode_heatmap_png(expected)
    pixels = np.asarray(Image.open(io.BytesIO(encode_heatmap_png(expected))))
    assert pixels.shape == (north.scan.height, north.scan.width)
    heatmap.refresh_from_db()
    assert heatmap.model_version == analyzer.model_version


def test_each_class_gets_its_own_map(north, client, analyzer, django_capture_on_commit_callbacks):
    client.force_login(north.staff)
    bodies = {}
    for label in ("meningioma", "notumor", "pituitary"):
        with django_capture_on_commit_callbacks(execute=False):
            client.get(_url(north.scan, label))
        tasks.explain_scan(ClassHeatmap.objects.get(label=label).pk)
        bodies[label] = _body(client.get(_url(north.scan, label)))
    assert len(set(bodies.values())) == 3


def test_the_map_an_unreassuring_no_tumour_opens_on_is_stored_with_the_analysis(
    north, client, broker, monkeypatch, django_capture_on_commit_callbacks
):
    """The card opens a low-confidence "No tumour" on the likeliest tumour's map
    (Prediction.heatmap_label): the worker stores that map beside the result, so showing the
    page publishes no task; a confident "No tumour" stores none."""
    client.force_login(north.staff)
    opened, stand_in_calls = {}, {}
    for name, top in (("unsure", 0.5), ("sure", 0.99)):
        stand_in = PixelAnalyzer(label="notumor", top=top)
        monkeypatch.setattr(tasks, "_get_analyzer", lambda stand_in=stand_in: stand_in)
        with django_capture_on_commit_callbacks(execute=False):
            (scan,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(png_bytes())]).scans
        assert tasks.analyze_scan(scan.pk) == "done"
        opened[name] = Scan.objects.get(pk=scan.pk).prediction
        stand_in_calls[name] = stand_in.explain_calls
    unsure, sure = opened["unsure"], opened["sure"]
    assert unsure.heatmap_label != "notumor"
    assert stand_in_calls["unsure"] == 0  # the map came with the analysis, no explain() pass
    (stored,) = ClassHeatmap.objects.filter(prediction=unsure)
    assert (stored.label, stored.is_ready, stored.model_version) == (unsure.heatmap_label, True, "pixel-test-1")
    with django_capture_on_commit_callbacks(execute=True):
        served = client.get(_url(unsure.scan, unsure.heatmap_label))
    assert served.status_code == 200
    assert broker() == []  # nothing published to show it
    expected = PixelAnalyzer().explain(unsure.scan.image.open("rb").read(), unsure.heatmap_label)
    assert _body(served) == encode_heatmap_png(expected)
    assert sure.heatmap_label == "notumor"
    assert not ClassHeatmap.objects.filter(prediction=sure).exists()


@pytest.mark.parametrize("made", [{"tumour_heatmap": None}, {"tumour_label": "glioma"}], ids=["none", "another"])
def test_an_opening_map_the_analysis_did_not_make_is_explained_by_the_worker(
    north, broker, monkeypatch, django_capture_on_commit_callbacks, made
):
    """A result without the map its card opens on (at the confidence threshold's edge the
    analysis and the stored probabilities can disagree; on a tie they can name different
    classes) still gets it stored: by explain(), never another class's map under its name."""
    stand_in = PixelAnalyzer(label="notumor", top=0.5)  # the card opens on pituitary (a tie: the last name)
    analyze = stand_in.analyze
    monkeypatch.setattr(stand_in, "analyze", lambda *scan: dataclasses.replace(analyze(*scan), **made))
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: stand_in)
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(png_bytes())]).scans
    assert tasks.analyze_scan(scan.pk) == "done"
    prediction = Scan.objects.get(pk=scan.pk).prediction
    assert (prediction.heatmap_label, stand_in.explain_calls) == ("pituitary", 1)
    (stored,) = ClassHeatmap.objects.filter(prediction=prediction)
    assert (stored.label, stored.is_ready) == (prediction.heatmap_label, True)
    expected = stand_in.explain(scan.image.open("rb").read(), prediction.heatmap_label)
    assert stored.image.read() == encode_heatmap_png(expected)


def test_unknown_class_and_unanalysed_scan_are_clear_400s(north, client, django_capture_on_commit_callbacks):
    client.force_login(north.staff)
    unknown = client.get(_url(north.scan, "tumour"))
    assert unknown.status_code == 400
    assert "Unknown class 'tumour'" in str(unknown.json())
    with django_capture_on_commit_callbacks(execute=False):
        (queued,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(png_bytes())]).scans
    waiting = client.get(_url(queued, "glioma"))
    assert waiting.status_code == 400
    assert "not been analysed" in str(waiting.json())
    assert not ClassHeatmap.objects.exists()


def test_a_failed_computation_says_why_and_is_retried_later(
    north, client, broker, monkeypatch, django_capture_on_commit_callbacks
):
    class Broken(PixelAnalyzer):
        def explain(self, data: bytes, label: str) -> np.ndarray:
            raise RuntimeError("out of GPU memory")

    monkeypatch.setattr(tasks, "_get_analyzer", Broken)
    client.force_login(north.staff)
    with django_capture_on_commit_callbacks(execute=True):
        client.get(_url(north.scan, "notumor"))
    (message,) = broker()
    assert tasks.explain_scan(message.args[0]) == "failed"
    failed = client.get(_url(north.scan, "notumor"))
    assert failed.status_code == 422
    assert "could not be computed (RuntimeError)" in failed.json()["detail"]

    # A minute later the next request asks a worker again.
    ClassHeatmap.objects.update(requested_at=timezone.now() - timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get(_url(north.scan, "notumor")).status_code == 202
    assert [m.task for m in broker()] == ["workers.tasks.explain_scan"]


def test_deleting_the_scan_removes_class_heatmap_files(
    north, client, analyzer, media_root, django_capture_on_commit_callbacks
):
    client.force_login(north.staff)
    with django_capture_on_commit_callbacks(execute=False):
        client.get(_url(north.scan, "notumor"))
    tasks.explain_scan(ClassHeatmap.objects.get().pk)
    name = ClassHeatmap.objects.get().image.name
    assert (media_root / name).exists()
    with django_capture_on_commit_callbacks(execute=True):
        Scan.objects.get(pk=north.scan.pk).delete()
    assert not ClassHeatmap.objects.exists()
    assert stored_files(media_root) == []
