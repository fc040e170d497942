"""A multi-slice study analysed in one batch (analyze_scans), JSON logs carrying the scan id on
every lifecycle line, and the worker's Prometheus series after a scan."""

import json
import logging
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY
from pythonjsonlogger.json import JsonFormatter

from apps.scans.models import Prediction, Scan, ScanStatus
from apps.scans.services import scans_upload
from clinic_platform.logcontext import ScanIdFilter
from tests.testkit.data import PixelAnalyzer, upload
from tests.testkit.scans import real_scan_bytes, with_burnt_text
from workers import tasks


@pytest.fixture
def analyzer(monkeypatch):
    stand_in = PixelAnalyzer(label="glioma")
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: stand_in)
    return stand_in


def _study(world, capture, count: int = 3) -> list[Scan]:
    files = [upload(real_scan_bytes("glioma", i), f"slice-{i}.jpg") for i in range(count)]
    with capture(execute=True):
        return scans_upload(case=world.case, uploaded_by=world.staff, uploads=files, study=True).scans


def test_a_study_is_published_as_one_batch_of_its_slices(north, broker, django_capture_on_commit_callbacks, settings):
    settings.SCAN_BATCH_SIZE = 2
    scans = _study(north, django_capture_on_commit_callbacks)
    published = broker()
    ids = [s.pk for s in scans]
    assert [(p.task, p.args, p.routing_key) for p in published] == [
        ("workers.tasks.analyze_scans", [ids[:2]], "inference"),
        ("workers.tasks.analyze_scans", [ids[2:]], "inference"),
    ]
    assert all(s.enqueued_at for s in Scan.objects.filter(pk__in=ids))


def test_the_worker_analyses_a_study_in_one_pass(north, analyzer, broker, django_capture_on_commit_callbacks):
    scans = _study(north, django_capture_on_commit_callbacks)
    ids = [s.pk for s in scans]
    outcomes = tasks.analyze_scans(ids)
    assert outcomes == {str(i): "done" for i in ids}
    assert (analyzer.batch_calls, analyzer.calls) == (1, 0)
    assert analyzer.decoded_given == 3  # the pixels each slice's text check decoded (checked equal)
    assert set(Scan.objects.filter(pk__in=ids).values_list("status", flat=True)) == {ScanStatus.DONE}
    # A duplicate message does nothing.
    assert tasks.analyze_scans(ids) == {str(i): "skipped" for i in ids}


def test_a_slice_released_unchecked_sends_the_batch_its_bytes_to_decode(
    north, analyzer, broker, django_capture_on_commit_callbacks
):
    """A slice a person released is not text-checked, so nothing decoded it: the one pass
    decodes the batch's bytes itself (no slice goes in without its pixels)."""
    ids = [s.pk for s in _study(north, django_capture_on_commit_callbacks)]
    Scan.objects.filter(pk=ids[0]).update(burnt_text_released=True)
    assert tasks.analyze_scans(ids) == {str(i): "done" for i in ids}
    assert (analyzer.batch_calls, analyzer.decoded_given) == (1, 0)


@pytest.mark.parametrize(("lane_batch", "calls"), [(1, (0, 3)), (2, (1, 1)), (4, (1, 0))])
def test_a_cpu_worker_analyses_a_study_lane_batch_slices_per_call(
    north, analyzer, broker, django_capture_on_commit_callbacks, settings, lane_batch, calls
):
    """(batch calls, one-slice calls) for 3 slices: chunks of STUDY_LANE_BATCH, a chunk of one
    through analyze()."""
    settings.STUDY_LANE_BATCH = lane_batch
    analyzer.batch_preferred = False  # what a CPU worker's runtime says (workers/runtime.py)
    ids = [s.pk for s in _study(north, django_capture_on_commit_callbacks)]
    assert tasks.analyze_scans(ids) == {str(i): "done" for i in ids}
    assert (analyzer.batch_calls, analyzer.calls) == calls


def test_a_chunk_whose_text_check_fails_is_checked_again_slice_by_slice(
    north, analyzer, broker, django_capture_on_commit_callbacks, monkeypatch
):
    """An error in a lane's text check (Tesseract gone) is not "no text": each slice is checked
    again on the task's thread, and the named one is still held, never analysed."""
    analyzer.batch_preferred = False
    files = [
        upload(real_scan_bytes("glioma", 1), "a.jpg"),
        upload(with_burnt_text(real_scan_bytes("glioma", 2)), "b.jpg"),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        scans = scans_upload(case=north.case, uploaded_by=north.staff, uploads=files, study=True).scans

    def broken(datas):
        raise OSError("tesseract is not installed")

    monkeypatch.setattr(tasks, "_texts_in", broken)
    outcomes = tasks.analyze_scans([s.pk for s in scans])
    assert outcomes == {str(scans[0].pk): "done", str(scans[1].pk): "held"}
    assert analyzer.calls + analyzer.batch_calls == 1


@pytest.mark.parametrize("lane_batch", [1, 2], ids=["a slice per call", "two per call"])
def test_a_cpu_worker_analyses_a_studys_slices_on_parallel_lanes_and_stores_them_in_order(
    north, analyzer, broker, django_capture_on_commit_callbacks, settings, monkeypatch, lane_batch
):
    """STUDY_ANALYSIS_LANES chunks are analysed at once: two analyses meet at a barrier (it
    breaks, failing the slices, if they ran one after another; the stand-in's analyze_batch
    analyses its slices one by one); the task's thread stores each result, in slice order,
    under its own scan."""
    import threading

    settings.STUDY_ANALYSIS_LANES, settings.STUDY_LANE_BATCH = 2, lane_batch
    analyzer.batch_preferred = False
    ids = [s.pk for s in _study(north, django_capture_on_commit_callbacks, count=4)]
    meet = threading.Barrier(2, timeout=10)
    lanes: set[str] = set()
    alone = analyzer.analyze

    def analyze(data: bytes, decoded=None, unvalidated=False):
        lanes.add(threading.current_thread().name)
        meet.wait()  # both lanes are inside analyze() together
        return alone(data, decoded, unvalidated)

    analyzer.analyze = analyze
    stored: list[int] = []
    store = tasks._store
    monkeypatch.setattr(tasks, "_store", lambda scan, result, data: stored.append(scan.pk) or store(scan, result, data))
    assert tasks.analyze_scans(ids) == {str(i): "done" for i in ids}
    assert stored == ids
    assert len(lanes) == 2
    assert all(name.startswith("analysis") for name in lanes)
    for scan in Scan.objects.filter(pk__in=ids):  # each slice's own result, not a neighbour's
        with scan.image.open("rb") as original, scan.prediction.overlay.open("rb") as overlay:
            assert overlay.read() == alone(original.read()).overlay_png


def test_an_error_on_a_lane_is_recorded_on_its_own_slice(north, analyzer, broker, django_capture_on_commit_callbacks):
    """A slice whose analysis raises on a lane (a transient error) goes back to the queue for
    the sweep, like on the one-scan path; its neighbours are stored."""
    analyzer.batch_preferred = False
    scans = _study(north, django_capture_on_commit_callbacks)
    with scans[1].image.open("rb") as handle:
        failing = handle.read()
    alone = analyzer.analyze

    def analyze(data: bytes, decoded=None, unvalidated=False):
        if data == failing:
            raise MemoryError("a transient failure")
        return alone(data, decoded, unvalidated)

    analyzer.analyze = analyze
    outcomes = tasks.analyze_scans([s.pk for s in scans])
    assert outcomes == {str(scans[0].pk): "done", str(scans[1].pk): "retry", str(scans[2].pk): "done"}
    middle = Scan.objects.get(pk=scans[1].pk)
    assert middle.status == ScanStatus.QUEUED
    assert middle.error.endswith("(The analysis failed (MemoryError). Try uploading again.)")


def test_an_unreadable_slice_fails_alone(north, analyzer, broker, media_root, django_capture_on_commit_callbacks):
    scans = _study(north, django_capture_on_commit_callbacks)
    broken = media_root / scans[1].image.name
    broken.write_bytes(broken.read_bytes()[:2000])
    outcomes = tasks.analyze_scans([s.pk for s in scans])
    assert outcomes == {str(scans[0].pk): "done", str(scans[1].pk): "failed", str(scans[2].pk): "done"}
    assert Scan.objects.get(pk=scans[1].pk).error == "The image is truncated or corrupt and cannot be read."


@pytest.mark.parametrize("batch_preferred", [True, False], ids=["one batch", "one by one"])
def test_a_slice_the_gate_rejects_ends_rejected_alone_and_is_counted(
    north, analyzer, broker, django_capture_on_commit_callbacks, batch_preferred
):
    """The same `rejected` path as analyze_scan, for each slice of analyze_scans' batch."""
    scans = _study(north, django_capture_on_commit_callbacks)
    with scans[1].image.open("rb") as handle:
        outlier = handle.read()
    gated = analyzer.analyze

    def analyze(data: bytes, decoded=None, unvalidated=False):  # the gate flags the middle slice only
        result = gated(data, decoded, unvalidated)
        return replace(result, ood_score=41.5, out_of_distribution=True) if data == outlier else result

    analyzer.analyze, analyzer.batch_preferred = analyze, batch_preferred
    rejected_before = _sample("clinic_scans_analysed_total", {"status": "rejected"})
    outcomes = tasks.analyze_scans([s.pk for s in scans])
    assert outcomes == {str(scans[0].pk): "done", str(scans[1].pk): "rejected", str(scans[2].pk): "done"}
    assert analyzer.batch_calls == 1  # one pass, or the lane's one chunk
    middle = Scan.objects.get(pk=scans[1].pk)
    assert middle.status == ScanStatus.REJECTED
    assert middle.error.startswith("This does not look like a brain MRI slice (")
    assert middle.ood_score == pytest.approx(41.5)
    assert not Prediction.objects.filter(scan=middle).exists()
    assert Scan.objects.get(pk=scans[0].pk).ood_score == pytest.approx(0.8)
    assert _sample("clinic_scans_analysed_total", {"status": "rejected"}) == rejected_before + 1


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_scan_is_counted_and_timed_per_stage(north, analyzer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes())]).scans
    done = _sample("clinic_scans_analysed_total", {"status": "done"})
    stages = {s: _sample("clinic_analysis_stage_seconds_count", {"stage": s}) for s in ("decode", "model", "gradcam")}
    storage = _sample("clinic_analysis_stage_seconds_count", {"stage": "storage"})
    assert tasks.analyze_scan(scan.pk) == "done"
    assert _sample("clinic_scans_analysed_total", {"status": "done"}) == done + 1
    for name, before in stages.items():
        assert _sample("clinic_analysis_stage_seconds_count", {"stage": name}) == before + 1, name
    assert _sample("clinic_analysis_stage_seconds_count", {"stage": "storage"}) == storage + 2  # read, write
    assert _sample("clinic_model_info", {"version": "pixel-test-1"}) == 1


def test_every_lifecycle_line_of_a_scan_carries_its_id_as_json(north, analyzer, broker, caplog,
                                                                django_capture_on_commit_callbacks):  # fmt: skip
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(ScanIdFilter())
    with django_capture_on_commit_callbacks(execute=True):
        (scan,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes())]).scans
    assert tasks.analyze_scan(scan.pk) == "done"
    formatter = JsonFormatter("%(levelname)s %(name)s %(scan_id)s %(message)s")
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name.startswith(("apps.scans", "workers"))]
    messages = [line["message"] for line in lines]
    assert any("stored" in m for m in messages), messages
    assert any("published" in m for m in messages), messages
    assert any("claimed" in m for m in messages), messages
    assert any(": done" in m for m in messages), messages
    assert {line["scan_id"] for line in lines} == {scan.pk}, lines


def test_a_dicom_series_is_published_as_one_study_and_loose_files_one_by_one(
    north, broker, django_capture_on_commit_callbacks
):
    from tests.testkit import dicom as dicomdata

    series = upload(dicomdata.series_zip(dicomdata.training_series(3)), "study.zip", "application/zip")
    loose = upload(real_scan_bytes("pituitary"), "loose.jpg")
    with django_capture_on_commit_callbacks(execute=True):
        outcome = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[series, loose])
    (jpeg,) = [s.pk for s in outcome.scans]
    (study,) = outcome.studies
    # The request published the JPEG's analysis and the study's unpacking job, nothing decoded yet.
    assert {(p.task, p.args[0]) for p in broker()} == {
        ("workers.tasks.analyze_scan", jpeg), ("workers.tasks.ingest_study", study.pk)
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.ingest_study(study.pk) == "unpacked"
    slices = sorted(study.scans.values_list("pk", flat=True))
    assert len(slices) == 3
    published = {(p.task, tuple(p.args[0]) if isinstance(p.args[0], list) else p.args[0]) for p in broker()}
    assert ("workers.tasks.analyze_scans", tuple(slices)) in published


def test_a_slice_removed_mid_analysis_is_superseded_and_the_rest_of_the_batch_is_stored(
    north, analyzer, broker, django_capture_on_commit_callbacks, monkeypatch
):
    """A slice removed while its batch is analysed (the live manager hides it then) must not end
    the task: the others are stored, none is left in `processing`."""
    from django.utils import timezone

    ids = [s.pk for s in _study(north, django_capture_on_commit_callbacks)]
    analyse = analyzer.analyze_batch

    def removed_meanwhile(scans, decoded=None, unvalidated=None):
        Scan.all_objects.filter(pk=ids[1]).update(removed_at=timezone.now(), removed_reason="wrong patient")
        return analyse(scans, decoded, unvalidated)

    monkeypatch.setattr(analyzer, "analyze_batch", removed_meanwhile)
    assert tasks.analyze_scans(ids) == {str(ids[0]): "done", str(ids[1]): "superseded", str(ids[2]): "done"}
    assert set(Scan.objects.filter(pk__in=ids).values_list("status", flat=True)) == {ScanStatus.DONE}
    assert not Prediction.objects.filter(scan_id=ids[1]).exists()


@pytest.mark.parametrize("batch_preferred", [True, False], ids=["one batch", "one by one"])
def test_a_study_task_refreshes_the_case_priority_once_and_it_is_right(
    north, analyzer, broker, django_capture_on_commit_callbacks, monkeypatch, batch_preferred
):
    """Each slice stores a prediction and a status (a signal each): the task refreshes the stored
    worklist priority once, at its end, and it is what a full recompute says."""
    from apps.cases import worklist
    from apps.cases.models import Case

    analyzer.batch_preferred, analyzer.top = batch_preferred, 0.55  # a glioma, low confidence
    ids = [s.pk for s in _study(north, django_capture_on_commit_callbacks, count=4)]
    refreshes = []
    real = worklist.worklist_priority_refresh
    monkeypatch.setattr(
        worklist, "worklist_priority_refresh", lambda **kw: refreshes.append(list(kw["case_ids"])) or real(**kw)
    )
    assert set(tasks.analyze_scans(ids).values()) == {"done"}
    assert refreshes == [[north.case.pk]]
    stored = Case.all_objects.get(pk=north.case.pk).worklist_priority
    assert stored == worklist.Priority.LOW_CONFIDENCE_TUMOUR
    real(case_ids=[north.case.pk])
    assert Case.all_objects.get(pk=north.case.pk).worklist_priority == stored


def test_one_scan_task_refreshes_the_case_priority_once(
    north, analyzer, django_capture_on_commit_callbacks, monkeypatch
):
    from apps.cases import worklist
    from apps.cases.models import Case

    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes())]).scans
    refreshes = []
    real = worklist.worklist_priority_refresh
    monkeypatch.setattr(
        worklist, "worklist_priority_refresh", lambda **kw: refreshes.append(list(kw["case_ids"])) or real(**kw)
    )
    assert tasks.analyze_scan(scan.pk) == "done"
    assert refreshes == [[north.case.pk]]
    assert Case.all_objects.get(pk=north.case.pk).worklist_priority == worklist.Priority.TUMOUR


@pytest.mark.parametrize("batch_preferred", [True, False], ids=["one batch", "one by one"])
def test_a_study_task_costs_a_few_queries_per_slice(
    north, analyzer, broker, django_capture_on_commit_callbacks, batch_preferred
):
    """Per slice: its claim (lock, update, re-read) and its result (lock, insert, the signal's case
    lookup, update) with their savepoints; per task: one transaction for the claims and one
    worklist priority refresh. Counted so that a per-slice query added by accident shows."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    analyzer.batch_preferred = batch_preferred
    ids = [s.pk for s in _study(north, django_capture_on_commit_callbacks, count=8)]
    with CaptureQueriesContext(connection) as queries:
        assert set(tasks.analyze_scans(ids).values()) == {"done"}
    assert len(queries) <= 8 * 11 + 4  # 91 measured; +15 with a priority refresh per signal
