"""What is not a brain MRI is kept out: blank and noise images at upload, and a scan the
out-of-distribution gate rejects ends as `rejected` (no label stored, the API says why).

The analyzer here is tests.testkit.data.PixelAnalyzer told what the gate decided; the gate itself, with
the real model, is tested in tests/mri/model/test_ood.py."""

import io

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from apps.cases.models import CaseStatus
from apps.cases.selectors import CaseFilters, case_list
from apps.scans.models import Prediction, Scan, ScanStatus
from apps.scans.services import scans_upload
from tests.testkit.data import PASSWORD, PixelAnalyzer, stored_files, upload, upload_refusal
from tests.testkit.scans import colour_photo, real_scan_bytes
from workers import tasks


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


BLANK = _png(np.zeros((256, 256), np.uint8))
NOISE = _png(np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8))


@pytest.fixture
def api(north):
    client = APIClient()
    response = client.post(reverse("api:token"), {"username": north.staff.username, "password": PASSWORD})
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


def test_blank_and_noise_uploads_are_refused_naming_the_reason_and_nothing_is_stored(north, media_root):
    before = stored_files(media_root)
    messages = upload_refusal(
        north, [upload(real_scan_bytes("glioma", 2)), upload(BLANK, "blank.png"), upload(NOISE, "noise.png")]
    )
    assert len(messages) == 2
    assert messages[0].startswith("blank.png: The image is blank")
    assert messages[1].startswith("noise.png: The image is random noise")
    assert north.case.scans.count() == 1  # the world's own scan only
    assert stored_files(media_root) == before


def test_api_refuses_a_blank_upload_with_a_400(api, north):
    response = api.post(
        reverse("api:case-scans", args=[north.case.pk]), {"file": upload(BLANK, "white.png")}, format="multipart"
    )
    assert response.status_code == 400
    assert "white.png: The image is blank" in response.json()["error"]["message"]


@pytest.fixture
def rejected(north, monkeypatch, media_root, django_capture_on_commit_callbacks) -> Scan:
    """A scan the gate rejected, run through the real task and services."""
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(
            case=north.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes("notumor"))]
        ).scans
    analyzer = PixelAnalyzer(label="meningioma", out_of_distribution=True)
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: analyzer)
    before = stored_files(media_root)
    assert tasks.analyze_scan(scan.pk) == "rejected"
    assert stored_files(media_root) == before  # no heatmap, no overlay
    assert tasks.analyze_scan(scan.pk) == "skipped"  # finished: a duplicate message does nothing
    return Scan.objects.get(pk=scan.pk)


def test_a_rejected_scan_stores_no_label_and_says_why(rejected):
    assert rejected.status == ScanStatus.REJECTED
    assert rejected.is_finished
    assert rejected.error.startswith("This does not look like a brain MRI slice (")
    assert "41.500, above the gate's threshold of 2.500," in rejected.error
    assert rejected.ood_score == pytest.approx(41.5)
    # The gate that judged it is kept with the score: a refitted gate does not rewrite history.
    assert rejected.ood_threshold == pytest.approx(PixelAnalyzer.ood_threshold)
    assert rejected.ood_gate == PixelAnalyzer.ood_gate
    assert not Prediction.objects.filter(scan=rejected).exists()


def test_api_shows_a_rejected_scan_with_a_null_prediction(api, rejected):
    body = api.get(reverse("api:scan-detail", args=[rejected.pk])).json()
    assert body["status"] == "rejected"
    assert body["prediction"] is None
    assert body["error"].startswith("This does not look like a brain MRI slice")
    assert body["ood_score"] == pytest.approx(41.5)
    assert body["ood_threshold"] == pytest.approx(PixelAnalyzer.ood_threshold)
    assert body["ood_gate"] == PixelAnalyzer.ood_gate
    assert body["overlay_url"] is None
    assert body["heatmap_url"] is None


def test_an_accepted_scan_keeps_its_score(north, monkeypatch, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(
            case=north.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes("glioma"))]
        ).scans
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: PixelAnalyzer())
    assert tasks.analyze_scan(scan.pk) == "done"
    done = Scan.objects.get(pk=scan.pk)
    assert done.ood_score == pytest.approx(0.8)
    assert (done.ood_threshold, done.ood_gate) == (pytest.approx(PixelAnalyzer.ood_threshold), PixelAnalyzer.ood_gate)


def test_case_status_and_history_filter_know_rejected_scans(north, rejected, api):
    # The world's other scan is done, this one rejected: the case is "done" with one rejected
    # image counted (issue 14: a rejected image beside analysed ones does not relabel the case;
    # this test said "rejected" before).
    (case,) = case_list(user=north.staff, filters=CaseFilters(status=CaseStatus.DONE))
    assert case.pk == north.case.pk
    assert case.scans_rejected == 1
    assert case.status == CaseStatus.DONE
    assert not case_list(user=north.staff, filters=CaseFilters(status=CaseStatus.REJECTED)).exists()
    # With its analysed scan gone, only the rejected image is left: now the case is "rejected".
    Scan.objects.filter(pk=north.scan.pk).delete()
    (case,) = case_list(user=north.staff, filters=CaseFilters(status=CaseStatus.REJECTED))
    assert case.pk == north.case.pk
    assert case.status == CaseStatus.REJECTED
    assert not case_list(user=north.staff, filters=CaseFilters(status=CaseStatus.DONE)).exists()
    listed = api.get(reverse("api:case-list"), {"status": "rejected"}).json()
    assert [c["id"] for c in listed["results"]] == [north.case.pk]


def test_a_colour_photo_the_gate_passes_is_rejected_as_colour(north, monkeypatch, django_capture_on_commit_callbacks):
    """Issue 16: a glass plate on a wooden table was labelled "No tumour". The model's gate may
    pass a photo (here: PixelAnalyzer says in distribution, "No tumour" at 97 %); the colour
    evidence rejects it through the real task, with its own reason, and stores no label."""
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(
            case=north.case, uploaded_by=north.staff, uploads=[upload(colour_photo(), "plate.jpg")]
        ).scans
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: PixelAnalyzer(label="notumor", top=0.97))
    assert tasks.analyze_scan(scan.pk) == "rejected"
    scan = Scan.objects.get(pk=scan.pk)
    assert scan.status == ScanStatus.REJECTED
    assert scan.error.startswith("This is a colour image; MRI slices are grey")
    assert not Prediction.objects.filter(scan=scan).exists()


def test_a_score_just_above_the_threshold_does_not_read_as_equal_to_it():
    from apps.scans.services import rejection_message
    from mri.results import AnalysisResult

    result = AnalysisResult(
        label="notumor", probabilities={"notumor": 1.0}, heatmap=np.zeros((2, 2), np.float32), overlay_png=b"",
        model_version="v", ood_score=2.27, out_of_distribution=True, ood_threshold=2.265246,
    )
    assert "score is 2.270, above the gate's threshold of 2.265," in rejection_message(result)


def test_a_score_and_its_threshold_are_shown_with_the_decimals_that_tell_them_apart():
    from apps.scans.services import gate_decimals, rejection_message
    from mri.results import AnalysisResult

    assert gate_decimals(0.8, 2.265246) == 3
    assert gate_decimals(2.2654, 2.2652) == 4
    assert gate_decimals(2.2652461, 2.2652460) == 7
    assert gate_decimals(2.265246, 2.265246) == 15  # equal: as far as it goes
    assert gate_decimals(0.8, None) == 1
    result = AnalysisResult(
        label="notumor", probabilities={"notumor": 1.0}, heatmap=np.zeros((2, 2), np.float32), overlay_png=b"",
        model_version="v", ood_score=2.2654, out_of_distribution=True, ood_threshold=2.2652,
    )
    assert "score is 2.2654, above the gate's threshold of 2.2652," in rejection_message(result)
