"""A DICOM study is a unit of work (issues 15 and 19): the upload request checks headers only,
budgets the whole request from them and stores the originals; a worker job decodes,
de-identifies and splits it (all or nothing), then its slices are analysed; progress per study.

Decompression bombs are real JPEG-LS files (tests/testkit/dicom.py `jpegls_bomb`: 11 KB, 16
frames at 4096², 512 MiB decoded). "The request never decodes" is asserted on the code path:
every pixel decoder raises while the request runs."""

import numpy as np
import pydicom
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.scans import ingest
from apps.scans.models import Scan, ScanStatus, StudyStatus, StudyUpload
from apps.scans.studies import study_progress
from mri.intake import dicom
from mri.intake.dicom import decode_dicom
from tests.testkit import dicom as dicomdata
from tests.testkit.data import PixelAnalyzer, api_token, stored_files, upload
from workers import tasks


class PixelsDecodedInTheRequest(AssertionError):
    pass


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    """Call it (after building the test files) and every way to a DICOM file's pixels raises:
    pydicom's pixel_array/decompress, its pixel helpers, and the platform's decoder (mri.intake.dicom)."""
    return lambda: _forbid_decoding(monkeypatch)


def _forbid_decoding(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise PixelsDecodedInTheRequest("a DICOM pixel was decoded during the upload request")

    import pydicom.pixels

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(refuse))
    monkeypatch.setattr(pydicom.dataset.Dataset, "decompress", refuse)
    monkeypatch.setattr(pydicom.dataset.Dataset, "convert_pixel_data", refuse)
    for name in ("pixel_array", "iter_pixels", "decompress"):
        monkeypatch.setattr(pydicom.pixels, name, refuse)
    for name in ("stored_frames", "frame_to_gray", "dataset_frames", "decode_dicom"):
        monkeypatch.setattr(dicom, name, refuse)
    return monkeypatch


@pytest.fixture
def api(north):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(north.staff)}")
    return client


def _post(api, north, *files):
    return api.post(reverse("api:case-scans", args=[north.case.pk]), {"file": list(files)}, format="multipart")


def _refusal(response) -> str:
    assert response.status_code == 400, response.content
    return str(response.json())


def test_a_jpeg_ls_bomb_and_a_zip_of_them_are_refused_from_their_headers(
    api, north, media_root, no_pixel_decoding, django_capture_on_commit_callbacks
):
    bomb = dicomdata.jpegls_bomb()  # 16 frames at 4096²
    assert len(bomb) < 16_000
    bombs, together = dicomdata.bomb_zip(60), dicomdata.bomb_zip(40, frames=4, side=2048)
    before = stored_files(media_root)
    no_pixel_decoding()
    with django_capture_on_commit_callbacks(execute=False):
        one = _post(api, north, upload(bomb, "bomb.dcm", "application/dicom"))
        many = _post(api, north, upload(bombs, "bombs.zip", "application/zip"))
    assert "16 frame(s) of 4096×4096 pixels would decode to 512.0 MB" in _refusal(one)
    assert "bombs.zip/BOMB/IM00000: 16 frame(s)" in _refusal(many)
    # Files each under the per-file budget, over the request's together: refused as a whole.
    with django_capture_on_commit_callbacks(execute=False):
        together = _post(api, north, upload(together, "s.zip", "application/zip"))
    assert "would decode to 1280.0 MB; at most 1024.0 MB" in _refusal(together)
    assert not StudyUpload.objects.exists()
    assert stored_files(media_root) == before  # nothing stored


def test_a_codestream_larger_than_its_dataset_says_is_refused_from_its_header(
    api, north, no_pixel_decoding, django_capture_on_commit_callbacks
):
    """The decoder allocates what the JPEG-LS stream declares, not what Rows/Columns say: a
    64×64 dataset over a 4096² stream is refused before anything decodes it."""
    import imagecodecs
    from pydicom.encaps import encapsulate

    ds = dicomdata.base_dataset(np.zeros((64, 64), np.uint16), bits_stored=16)
    ds.PixelData = encapsulate([imagecodecs.jpegls_encode(np.zeros((4096, 4096), np.uint16))])
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLSLossless
    liar = dicomdata.to_bytes(ds)
    no_pixel_decoding()
    with django_capture_on_commit_callbacks(execute=False):
        response = _post(api, north, upload(liar, "liar.dcm", "application/dicom"))
    assert "Frame 1's compressed image is 4096×4096 pixels, not the 64×64 the file declares" in _refusal(response)


def test_the_slice_limit_counts_frames_from_the_headers(api, north, settings, no_pixel_decoding,
                                                        django_capture_on_commit_callbacks):  # fmt: skip
    settings.DICOM_MAX_SLICES_PER_REQUEST = 10
    archive = dicomdata.bomb_zip(3, frames=4, side=256)
    no_pixel_decoding()
    with django_capture_on_commit_callbacks(execute=False):
        response = _post(api, north, upload(archive, "s.zip", "application/zip"))
    assert "holds 12 slices; at most 10" in _refusal(response)


def test_the_upload_request_never_decodes_pixels_and_stores_the_originals_as_they_came(
    api, north, media_root, no_pixel_decoding, django_capture_on_commit_callbacks
):
    series = dicomdata.series_zip(dicomdata.training_series(4, key="jpeg-ls-lossless"))
    frames = np.stack([np.full((96, 96), 40 * (i + 1), np.uint16) for i in range(3)])
    multi = dicomdata.to_bytes(dicomdata.encode(dicomdata.base_dataset(frames, bits_stored=16), "jpeg-ls-lossless"))
    undo = no_pixel_decoding()
    with django_capture_on_commit_callbacks(execute=False):
        response = _post(api, north, upload(series, "series.zip", "application/zip"), upload(multi, "cine.dcm"))
    assert response.status_code == 201, response.content
    (received,) = response.json()["studies"]
    assert (received["status"], received["slices_total"], received["slices_done"]) == ("received", 7, 0)
    assert received["progress"] == "Study of 7 slice(s) waiting to be unpacked."
    study = StudyUpload.objects.get(pk=received["id"])
    originals = {source["name"]: default_read(source["path"]) for source in study.sources}
    assert originals == {"series.zip": series, "cine.dcm": multi}  # as they came, multi-frame whole
    assert not Scan.objects.filter(format="DICOM").exists()

    undo.undo()  # the worker decodes
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.ingest_study(study.pk) == "unpacked"
    study.refresh_from_db()
    assert (study.status, study.slices_total) == (StudyStatus.UNPACKED, 7)
    scans = list(study.scans.order_by("pk"))
    assert len(scans) == 7
    for scan, expected in zip(scans[4:], frames, strict=True):
        with scan.dicom.open("rb") as handle:
            np.testing.assert_array_equal(pydicom.dcmread(handle).pixel_array, expected)
    # The originals (PHI inside) are gone once unpacked; only de-identified files remain.
    assert all(not source["path"] for source in study.sources)
    assert not [p for p in stored_files(media_root) if "originals" in str(p)]
    assert tasks.ingest_study(study.pk) == "skipped"  # a duplicate message does nothing
    assert study.scans.count() == 7


def default_read(path: str) -> bytes:
    from django.core.files.storage import default_storage

    with default_storage.open(path, "rb") as handle:
        return handle.read()


class WorkerKilled(BaseException):
    """What SIGKILL is to the job: nothing after it runs (not even `except Exception`)."""


def _run_redelivered(study_id: int) -> str:
    tasks.ingest_study.push_request(delivery_info={"redelivered": True, "routing_key": "inference"})
    try:
        return tasks.ingest_study.run(study_id)
    finally:
        tasks.ingest_study.pop_request()


def _received(north, capture, n: int = 4) -> StudyUpload:
    from apps.scans.services import scans_upload

    archive = upload(dicomdata.series_zip(dicomdata.training_series(n)), "s.zip", "application/zip")
    with capture(execute=False):
        (study,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[archive]).studies
    return study


def test_a_job_killed_mid_way_leaves_nothing_and_the_redelivery_finishes_it(
    north, media_root, monkeypatch, settings, django_capture_on_commit_callbacks
):
    study = _received(north, django_capture_on_commit_callbacks)
    originals = stored_files(media_root)
    real = ingest.dicom_slices
    calls = []

    def dies_on_the_third(data, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise WorkerKilled
        return real(data, **kwargs)

    monkeypatch.setattr(ingest, "dicom_slices", dies_on_the_third)
    with pytest.raises(WorkerKilled), django_capture_on_commit_callbacks(execute=False):
        tasks.ingest_study(study.pk)
    study.refresh_from_db()
    # Never half-done: no scan, no slice file; the study is still being unpacked, attempt 1.
    assert (study.status, study.attempts) == (StudyStatus.UNPACKING, 1)
    assert not study.scans.exists()
    assert stored_files(media_root) == originals
    assert study_progress(study=study).text == "Study of 4 slice(s) being unpacked and de-identified."

    monkeypatch.setattr(ingest, "dicom_slices", real)
    with django_capture_on_commit_callbacks(execute=False):
        assert tasks.ingest_study(study.pk) == "skipped"  # a first delivery never steals a running job
        assert _run_redelivered(study.pk) == "unpacked"  # the broker's redelivery takes it over
    study.refresh_from_db()
    assert (study.status, study.attempts, study.slices_total) == (StudyStatus.UNPACKED, 2, 4)
    assert sorted(study.scans.values_list("instance_number", flat=True)) == [1, 2, 3, 4]  # each slice once


def test_a_job_killed_every_time_is_failed_clearly(north, media_root, monkeypatch, settings,
                                                   django_capture_on_commit_callbacks):  # fmt: skip
    settings.SCAN_MAX_ATTEMPTS = 2
    study = _received(north, django_capture_on_commit_callbacks, n=2)

    def killed(*_args, **_kwargs):
        raise WorkerKilled

    monkeypatch.setattr(ingest, "dicom_slices", killed)
    with django_capture_on_commit_callbacks(execute=False):
        with pytest.raises(WorkerKilled):
            tasks.ingest_study(study.pk)
        with pytest.raises(WorkerKilled):
            _run_redelivered(study.pk)
        assert _run_redelivered(study.pk) == "skipped"
    study.refresh_from_db()
    assert study.status == StudyStatus.FAILED
    assert study.error == "The study could not be unpacked after 2 attempts; nothing of it was stored."
    assert not study.scans.exists()
    assert not [p for p in stored_files(media_root) if "originals" in str(p)]  # the PHI is not kept
    assert study_progress(study=study).text.startswith("Study upload failed: The study could not be unpacked")


def test_an_undecodable_study_fails_with_the_reason_and_the_sweep_republishes_a_lost_one(
    north, broker, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from apps.scans.services import scans_upload
    from apps.scans.studies import studies_requeue_stale

    truncated = dicomdata.bundled("MR_small.dcm")
    truncated = truncated[:-2000]  # the header is whole, the pixel stream is not
    with django_capture_on_commit_callbacks(execute=False):
        outcome = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(truncated, "t.dcm")])
    if not outcome.studies:
        pytest.skip("pydicom refused the truncated header already")
    (study,) = outcome.studies
    # The message was lost (broker down at upload): the sweep publishes it again.
    StudyUpload.objects.filter(pk=study.pk).update(received_at=study.received_at - timedelta(minutes=10))
    broker()
    assert studies_requeue_stale() == 1
    assert [(p.task, p.args) for p in broker()] == [("workers.tasks.ingest_study", [study.pk])]
    assert tasks.ingest_study(study.pk) == "failed"
    study.refresh_from_db()
    assert study.status == StudyStatus.FAILED
    assert "No MR DICOM image could be read" in study.error
    assert "t.dcm" in study.error


def test_progress_per_study_only_grows_and_batches_equal_one_by_one(
    north, monkeypatch, settings, django_capture_on_commit_callbacks
):
    """Progress is "n of N slices analysed", non-decreasing to N; the study's slices analysed in
    batches (analyze_batch) store the same results as one by one (the PixelAnalyzer stand-in
    answers from the pixels it is given, so a slice mixed up in a batch would show)."""
    settings.SCAN_BATCH_SIZE = 3
    study = _received(north, django_capture_on_commit_callbacks, n=6)
    with django_capture_on_commit_callbacks(execute=False):
        tasks.ingest_study(study.pk)
    study.refresh_from_db()
    ids = list(study.scans.order_by("pk").values_list("pk", flat=True))
    batched = PixelAnalyzer(label="glioma")
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: batched)
    seen = [study_progress(study=study).slices_done]
    for start in range(0, len(ids), settings.SCAN_BATCH_SIZE):
        tasks.analyze_scans(ids[start : start + settings.SCAN_BATCH_SIZE])
        seen.append(study_progress(study=study).slices_done)
    assert seen == sorted(seen)
    assert seen == [0, 3, 6]
    assert (batched.batch_calls, batched.calls) == (2, 0)
    final = study_progress(study=study)
    assert (final.status, final.text) == ("done", "6 of 6 slices analysed.")
    from apps.scans.models import Prediction

    batch_results = {p.scan_id: (p.label, p.probabilities) for p in Prediction.objects.filter(scan_id__in=ids)}
    # The same slices, one by one.
    Prediction.objects.filter(scan_id__in=ids).delete()
    Scan.objects.filter(pk__in=ids).update(status=ScanStatus.QUEUED, attempts=0)
    single = PixelAnalyzer(label="glioma")
    single.batch_preferred, settings.STUDY_LANE_BATCH = False, 1  # a CPU worker's lanes, a slice per call
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: single)
    tasks.analyze_scans(ids)
    assert (single.calls, single.batch_calls) == (6, 0)
    one_by_one = {p.scan_id: (p.label, p.probabilities) for p in Prediction.objects.filter(scan_id__in=ids)}
    assert one_by_one == batch_results


def test_the_case_page_shows_the_studys_progress(client, north, django_capture_on_commit_callbacks):
    study = _received(north, django_capture_on_commit_callbacks, n=3)
    client.force_login(north.staff)
    page = client.get(reverse("case_detail", args=[north.case.pk])).content.decode()
    assert "Study of 3 slice(s) waiting to be unpacked." in page
    assert "every 3s" in page  # polled while unpacking
    summary = reverse("case_summary", args=[north.case.pk])
    assert "HX-Refresh" not in client.get(summary + "?unpacking=1", HTTP_HX_REQUEST="true").headers
    with django_capture_on_commit_callbacks(execute=False):
        tasks.ingest_study(study.pk)
    # Unpacked: the poll reloads the page, which now shows the slices' cards and the count.
    assert client.get(summary + "?unpacking=1", HTTP_HX_REQUEST="true").headers["HX-Refresh"] == "true"
    page = client.get(reverse("case_detail", args=[north.case.pk])).content.decode()
    assert "0 of 3 slices analysed." in page


def test_the_worker_applies_the_budget_again_before_decoding(north, settings, django_capture_on_commit_callbacks):
    """Defence in depth: a budget lowered after the upload is applied again before decoding."""
    study = _received(north, django_capture_on_commit_callbacks, n=2)
    settings.DICOM_MAX_DECODED_BYTES_PER_FILE = 1000
    assert tasks.ingest_study(study.pk) == "failed"
    study.refresh_from_db()
    assert "at most 0.0 MB per file" in study.error


def test_a_decoded_slice_is_the_original_frame(north, django_capture_on_commit_callbacks):
    data = dicomdata.training_series(1, key="jpeg2000-lossless")[0]
    with django_capture_on_commit_callbacks(execute=False):
        from apps.scans.services import scans_upload

        (study,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(data, "a.dcm")]).studies
        tasks.ingest_study(study.pk)
    (scan,) = StudyUpload.objects.get(pk=study.pk).scans.all()
    with scan.image.open("rb") as handle:
        from mri.intake.decode import decode_gray

        np.testing.assert_allclose(decode_gray(handle.read()), decode_dicom(data)[0], atol=1e-4)


def test_a_case_is_not_signed_while_its_study_is_being_unpacked(north, django_capture_on_commit_callbacks):
    from django.core.exceptions import ValidationError

    from apps.cases.services import case_sign
    from apps.scans.services import scan_review

    scan_review(scan=north.scan, reviewer=north.radiologist, agrees=True)
    study = _received(north, django_capture_on_commit_callbacks, n=2)
    with pytest.raises(ValidationError, match="still being unpacked"):
        case_sign(case=north.case, signer=north.radiologist, conclusion="Glioma.")
    with django_capture_on_commit_callbacks(execute=False):
        tasks.ingest_study(study.pk)
    with pytest.raises(ValidationError, match="still being analysed"):  # its slices, now
        case_sign(case=north.case, signer=north.radiologist, conclusion="Glioma.")


def test_a_purged_case_takes_its_unpacked_studys_originals_with_it(
    north, settings, media_root, django_capture_on_commit_callbacks
):
    import datetime

    from django.core.exceptions import ValidationError
    from django.utils import timezone

    from apps.cases.models import Case
    from apps.cases.services import case_soft_delete, cases_purge_deleted

    study = _received(north, django_capture_on_commit_callbacks, n=2)
    assert [p for p in stored_files(media_root) if "originals" in str(p)]
    # case_soft_delete refuses while a study waits; a case deleted anyway (a deletion that
    # raced the upload) is what the worker must handle.
    with pytest.raises(ValidationError, match="still being unpacked"):
        case_soft_delete(case=north.case, by=north.admin)
    Case.all_objects.filter(pk=north.case.pk).update(deleted_at=timezone.now())
    # A worker that takes it now finds the case deleted: failed, originals deleted.
    assert tasks.ingest_study(study.pk) == "failed"
    assert not [p for p in stored_files(media_root) if "originals" in str(p)]
    # One received after... and purged before any worker took it: its originals go with it.
    Case.all_objects.filter(pk=north.case.pk).update(deleted_at=None)
    second = _received(north, django_capture_on_commit_callbacks, n=1)
    Case.all_objects.filter(pk=north.case.pk).update(deleted_at=timezone.now() - datetime.timedelta(days=9999))
    with django_capture_on_commit_callbacks(execute=True):
        assert cases_purge_deleted() == 1
    assert not StudyUpload.objects.filter(pk=second.pk).exists()
    assert not [p for p in stored_files(media_root) if "originals" in str(p)]


def test_the_page_form_never_splits_a_request_refused_for_its_budget(
    north, media_root, settings, no_pixel_decoding, django_capture_on_commit_callbacks
):
    """The form keeps the good files of a batch with a bad one; a batch over the request's
    decoded budget must not then be stored file by file (each alone under the budget)."""
    from django.core.exceptions import ValidationError

    from apps.scans.batch import scans_upload_keeping_good

    settings.DICOM_MAX_DECODED_BYTES_PER_REQUEST = 48 * 2**20  # each file 32 MiB: one fits, two do not
    files = [dicomdata.jpegls_bomb(frames=4, side=2048, instance=i) for i in (1, 2)]
    before = stored_files(media_root)
    no_pixel_decoding()
    uploads = [upload(data, f"b{i}.dcm", "application/dicom") for i, data in enumerate(files)]
    uploads.append(upload(b"%PDF-1.4 not an image", "notes.png", "image/png"))
    with django_capture_on_commit_callbacks(execute=False), pytest.raises(ValidationError) as refused:
        scans_upload_keeping_good(case=north.case, uploaded_by=north.staff, uploads=uploads)
    assert "would decode to 64.0 MB; at most 48.0 MB" in str(refused.value.messages)
    assert not StudyUpload.objects.exists()
    assert stored_files(media_root) == before


def test_the_page_form_keeps_the_good_dicom_files_of_a_batch_in_one_study(
    north, media_root, django_capture_on_commit_callbacks
):
    from apps.scans.batch import scans_upload_keeping_good

    slices = dicomdata.training_series(2, patient_id=north.patient.mrn)
    uploads = [upload(data, f"s{i}.dcm", "application/dicom") for i, data in enumerate(slices)]
    uploads.append(upload(b"%PDF-1.4 not an image", "notes.png", "image/png"))
    with django_capture_on_commit_callbacks(execute=False):
        outcome = scans_upload_keeping_good(case=north.case, uploaded_by=north.staff, uploads=uploads)
    assert len(outcome.refused) == 1
    assert "notes.png" in outcome.refused[0]
    (study,) = StudyUpload.objects.all()
    assert outcome.studies == [study]
    assert sorted(source["name"] for source in study.sources) == ["s0.dcm", "s1.dcm"]
    assert study.slices_expected == 2


def _received_study(north, capture):
    from apps.scans.services import scans_upload

    slices = dicomdata.training_series(2, patient_id=north.patient.mrn)
    with capture(execute=False):
        uploads = [upload(d, f"s{i}.dcm", "application/dicom") for i, d in enumerate(slices)]
        outcome = scans_upload(case=north.case, uploaded_by=north.staff, uploads=uploads)
    (study,) = outcome.studies
    return study


def test_a_case_deleted_while_its_study_unpacks_gets_no_scans_and_the_study_fails_clearly(
    north, media_root, monkeypatch, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    from apps.cases.models import Case
    from apps.scans import studies
    from tests.testkit.data import unpack_study

    study = _received_study(north, django_capture_on_commit_callbacks)
    real_unpack = studies.unpack_source

    def deleted_meanwhile(*args, **kwargs):
        made = real_unpack(*args, **kwargs)
        Case.all_objects.filter(pk=north.case.pk).update(deleted_at=timezone.now())  # another request deleted it
        return made

    monkeypatch.setattr(studies, "unpack_source", deleted_meanwhile)
    before, files_before = Scan.all_objects.filter(case=north.case).count(), stored_files(media_root)
    failed = unpack_study(study)
    assert failed.status == StudyStatus.FAILED
    assert "The case was deleted before its study was unpacked" in failed.error
    assert Scan.all_objects.filter(case=north.case).count() == before
    # No slice left in storage, and the originals deleted with the failed study.
    assert set(stored_files(media_root)) < set(files_before)


def test_a_case_cannot_be_deleted_while_its_study_waits_to_be_unpacked(north, django_capture_on_commit_callbacks):
    from django.core.exceptions import ValidationError

    from apps.cases.services import case_soft_delete
    from tests.testkit.data import unpack_study

    study = _received_study(north, django_capture_on_commit_callbacks)
    tasks.analyze_scan(north.scan.pk)  # the world's own scan is done, so only the study holds the case
    with pytest.raises(ValidationError, match="still being unpacked"):
        case_soft_delete(case=north.case, by=north.admin)
    north.case.refresh_from_db()
    assert north.case.deleted_at is None
    assert unpack_study(study).status == StudyStatus.UNPACKED


def test_progress_leaves_removed_slices_out_and_names_the_held_ones(
    north, monkeypatch, django_capture_on_commit_callbacks
):
    """A removed slice is neither analysed nor waited for; a held one waits for a person, so the
    study says so instead of "analysing" for ever (the case page and the API)."""
    from apps.scans.holds import scan_hold
    from apps.scans.removal import scan_remove
    from apps.scans.services import scan_claim
    from apps.scans.studies import study_progress_for_case

    study = _received(north, django_capture_on_commit_callbacks, n=3)
    with django_capture_on_commit_callbacks(execute=False):
        tasks.ingest_study(study.pk)
    study.refresh_from_db()
    first, second, third = study.scans.order_by("pk")
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: PixelAnalyzer(label="glioma"))
    tasks.analyze_scans([first.pk, second.pk])
    scan_remove(scan=second, by=north.staff, reason="another patient's slice")
    assert scan_hold(scan=scan_claim(scan_id=third.pk))  # the worker found text burnt into it
    (line,) = study_progress_for_case(case=north.case)
    assert (line.status, line.slices_total, line.slices_done, line.slices_held) == ("held", 2, 1, 1)
    assert line.text.startswith("1 of 2 slices analysed. 1 held for a person's decision (text burnt into the image)")
    assert study_progress(study=study) == line
