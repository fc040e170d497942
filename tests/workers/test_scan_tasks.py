"""The analyze_scan task, run in-process: state machine, idempotency, failures, policy."""

import dataclasses
import io
from datetime import timedelta
from types import SimpleNamespace

import pytest
from PIL import Image

from apps.scans.models import Prediction, Scan, ScanStatus
from apps.scans.services import scan_claim, scan_complete, scans_requeue_stale, scans_upload
from clinic_platform.celery import _refuse_wrong_prefetch
from clinic_platform.celery import app as celery_app
from tests.testkit.data import PixelAnalyzer, stored_files, upload
from tests.testkit.scans import real_scan_bytes
from workers import tasks


@pytest.fixture
def analyzer(monkeypatch):
    """The model stand-in (see tests.testkit.data.PixelAnalyzer); the task is what is under test."""
    stand_in = PixelAnalyzer(label="meningioma")
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: stand_in)
    return stand_in


@pytest.fixture
def queued(north, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(
            case=north.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes("meningioma"))]
        ).scans
    return scan


def test_queued_scan_is_analysed_and_stored(queued, analyzer, media_root):
    assert tasks.analyze_scan(queued.pk) == "done"
    scan = Scan.objects.select_related("prediction").get(pk=queued.pk)
    assert scan.status == ScanStatus.DONE
    assert scan.error == ""
    assert scan.attempts == 1
    assert scan.queued_at <= scan.started_at <= scan.finished_at
    prediction = scan.prediction
    assert prediction.label == "meningioma"
    assert prediction.model_version == "pixel-test-1"
    assert abs(sum(prediction.probabilities.values()) - 1.0) < 1e-6
    heatmap = Image.open(media_root / prediction.heatmap.name)
    assert (heatmap.format, heatmap.mode, heatmap.size) == ("PNG", "L", (scan.width, scan.height))
    assert Image.open(io.BytesIO(prediction.overlay.read())).format == "PNG"
    assert "heatmap" in prediction.heatmap.name
    assert "overlay" in prediction.overlay.name


def test_second_run_does_nothing(queued, analyzer):
    tasks.analyze_scan(queued.pk)
    first = Scan.objects.select_related("prediction").get(pk=queued.pk)
    assert tasks.analyze_scan(queued.pk) == "skipped"
    again = Scan.objects.select_related("prediction").get(pk=queued.pk)
    assert analyzer.calls == 1
    assert again.prediction.pk == first.prediction.pk
    assert (again.finished_at, again.attempts) == (first.finished_at, 1)


def test_a_scan_is_decoded_once_for_its_text_check_and_its_analysis(queued, analyzer):
    """The analysis reads the pixels the burnt-in text check decoded (PixelAnalyzer checks they
    are the stored file's); a released scan, never checked, is decoded by the analysis."""
    assert tasks.analyze_scan(queued.pk) == "done"
    assert (analyzer.calls, analyzer.decoded_given) == (1, 1)
    Prediction.objects.filter(scan=queued).delete()
    Scan.objects.filter(pk=queued.pk).update(status=ScanStatus.QUEUED, burnt_text_released=True)
    assert tasks.analyze_scan(queued.pk) == "done"
    assert (analyzer.calls, analyzer.decoded_given) == (2, 1)


def test_scan_held_by_another_worker_failed_or_missing_is_left_alone(queued, north, analyzer):
    Scan.objects.filter(pk=queued.pk).update(status=ScanStatus.PROCESSING)
    assert tasks.analyze_scan(queued.pk) == "skipped"
    Scan.objects.filter(pk=queued.pk).update(status=ScanStatus.FAILED, error="earlier")
    assert tasks.analyze_scan(queued.pk) == "skipped"
    assert tasks.analyze_scan(10_000_000) == "skipped"
    assert analyzer.calls == 0
    assert Scan.objects.get(pk=queued.pk).error == "earlier"


def test_unreadable_stored_file_fails_with_the_decoders_message(queued, analyzer, media_root):
    path = media_root / queued.image.name
    path.write_bytes(path.read_bytes()[:2000])  # the file got truncated in storage
    files_before = stored_files(media_root)
    assert tasks.analyze_scan(queued.pk) == "failed"
    scan = Scan.objects.get(pk=queued.pk)
    assert scan.status == ScanStatus.FAILED
    assert scan.error == "The image is truncated or corrupt and cannot be read."
    assert scan.finished_at is not None
    assert not Prediction.objects.filter(scan=scan).exists()
    assert stored_files(media_root) == files_before


def test_unexpected_error_is_retried_then_fails_with_a_readable_message(queued, monkeypatch, settings, broker):
    class Broken:
        def analyze(self, data, decoded=None, unvalidated=False):
            raise RuntimeError("CUDA_ERROR_OUT_OF_MEMORY")

    settings.SCAN_MAX_ATTEMPTS = 2
    monkeypatch.setattr(tasks, "_get_analyzer", Broken)
    assert tasks.analyze_scan(queued.pk) == "retry"
    scan = Scan.objects.get(pk=queued.pk)
    assert (scan.status, scan.attempts, scan.enqueued_at) == (ScanStatus.QUEUED, 1, None)
    assert "will be retried" in scan.error
    # The next sweep publishes it straight away (it was never published since).
    assert scans_requeue_stale(older_than=timedelta(0)).published == 1
    assert [p.args for p in broker()] == [[queued.pk]]
    assert tasks.analyze_scan(queued.pk) == "failed"
    scan = Scan.objects.get(pk=queued.pk)
    assert (scan.status, scan.attempts) == (ScanStatus.FAILED, 2)
    assert scan.error == "The analysis failed (RuntimeError). Try uploading again."


def test_result_outside_the_contract_fails_the_scan(queued, monkeypatch):
    analyzer = PixelAnalyzer()
    wrong = SimpleNamespace(
        analyze=lambda *scan: dataclasses.replace(analyzer.analyze(*scan), label="astrocytoma")
    )
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: wrong)
    assert tasks.analyze_scan(queued.pk) == "failed"
    assert Scan.objects.get(pk=queued.pk).error.startswith("The model returned an unusable result")
    assert not Prediction.objects.filter(scan_id=queued.pk).exists()


def test_a_superseded_attempt_stores_nothing(queued, media_root):
    stale = scan_claim(scan_id=queued.pk)
    # The sweep declared that worker dead and a new attempt claimed the scan.
    Scan.objects.filter(pk=queued.pk).update(status=ScanStatus.QUEUED)
    current = scan_claim(scan_id=queued.pk)
    assert current.attempts == stale.attempts + 1
    files_before = stored_files(media_root)
    result = PixelAnalyzer().analyze(real_scan_bytes("meningioma"))
    assert scan_complete(scan=stale, result=result) is None
    assert stored_files(media_root) == files_before
    assert scan_complete(scan=current, result=result) is not None


def _run_redelivered(scan_id: int) -> str:
    """Run the task as a worker does for a message the broker delivered again (its worker died
    holding it: acks_late + reject_on_worker_lost); kombu marks it `redelivered`."""
    tasks.analyze_scan.push_request(delivery_info={"redelivered": True, "routing_key": "inference"})
    try:
        return tasks.analyze_scan.run(scan_id)
    finally:
        tasks.analyze_scan.pop_request()


def test_a_redelivered_message_takes_over_a_scan_its_dead_worker_left_processing(queued, analyzer):
    dead = scan_claim(scan_id=queued.pk)  # the worker that claimed it was then killed
    assert dead.status == ScanStatus.PROCESSING
    assert tasks.analyze_scan(queued.pk) == "skipped"  # a duplicate (first delivery) still waits
    assert _run_redelivered(queued.pk) == "done"
    scan = Scan.objects.select_related("prediction").get(pk=queued.pk)
    assert (scan.status, scan.attempts, scan.error) == (ScanStatus.DONE, 2, "")
    assert scan.started_at > dead.started_at
    assert analyzer.calls == 1
    # The dead attempt cannot overwrite the new one's result, and done stays done.
    assert scan_complete(scan=dead, result=PixelAnalyzer().analyze(real_scan_bytes("meningioma"))) is None
    assert _run_redelivered(queued.pk) == "skipped"
    assert Scan.objects.get(pk=queued.pk).finished_at == scan.finished_at


def test_a_redelivered_message_respects_the_attempt_limit_and_leaves_finished_scans(queued, analyzer, settings):
    settings.SCAN_MAX_ATTEMPTS = 2
    scan_claim(scan_id=queued.pk)
    Scan.objects.filter(pk=queued.pk).update(attempts=2)  # the worker died on the last attempt
    assert _run_redelivered(queued.pk) == "skipped"
    scan = Scan.objects.get(pk=queued.pk)
    assert (scan.status, scan.attempts) == (ScanStatus.FAILED, 2)
    assert "2 attempts" in scan.error
    assert _run_redelivered(queued.pk) == "skipped"
    assert Scan.objects.get(pk=queued.pk).error == scan.error
    assert _run_redelivered(10_000_000) == "skipped"
    assert analyzer.calls == 0


def test_every_task_gets_the_queue_policy():
    for task, queue in ((tasks.analyze_scan, "inference"), (tasks.requeue_stale_scans, "maintenance")):
        assert task.acks_late
        assert task.reject_on_worker_lost
        assert 0 < task.soft_time_limit < task.time_limit
        assert celery_app.amqp.router.route({}, task.name)["queue"].name == queue
    assert celery_app.conf.worker_prefetch_multiplier == 1


def test_a_worker_with_prefetch_above_one_refuses_to_start():
    with pytest.raises(SystemExit, match="prefetch"):
        _refuse_wrong_prefetch(SimpleNamespace(prefetch_multiplier=4, app=celery_app))  # --prefetch-multiplier 4
    _refuse_wrong_prefetch(SimpleNamespace(prefetch_multiplier=1, app=celery_app))


@pytest.mark.model
def test_real_analyzer_end_to_end_through_the_task(queued, media_root):
    assert tasks.analyze_scan(queued.pk) == "done"
    scan = Scan.objects.select_related("prediction").get(pk=queued.pk)
    assert scan.prediction.label in ("glioma", "meningioma", "notumor", "pituitary")
    assert abs(sum(scan.prediction.probabilities.values()) - 1.0) < 1e-3
    heatmap = Image.open(media_root / scan.prediction.heatmap.name)
    assert heatmap.size == (scan.width, scan.height)
    assert tasks.analyze_scan(queued.pk) == "skipped"
