"""Sequence awareness end to end: a DICOM slice's sequence is read from its attributes at
upload, and a result on a sequence the model card does not list as validated is shown as
"not validated for <sequence>" on the scan card, the study summary, the worklist (ranked with
low-confidence tumours), the PDF and the API; never as a confident "No tumour".

The analyzer is tests.testkit.data.PixelAnalyzer (not under test) reporting the shipped model's
version, so the services read the shipped card's list of validated sequences."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.cases.reports import case_report_export
from apps.cases.services import case_create
from apps.cases.worklist import Priority, WorklistFilters, case_worklist
from apps.scans.models import ClassHeatmap, Prediction, Scan
from apps.scans.services import scans_upload
from mri.card import read_card
from tests.testkit import dicom as dicomdata
from tests.testkit.data import PASSWORD, PixelAnalyzer, api_token, finish_scan, unpack, upload
from tests.testkit.documents import pdf_text
from tests.testkit.scans import real_scan_bytes
from workers import tasks

T2 = dicomdata.T2_ATTRIBUTES
T1 = {"ScanningSequence": "SE", "SequenceVariant": "SK", "RepetitionTime": 500, "EchoTime": 12}
SHIPPED = read_card()["version"]


def _mr_slice(attributes: dict, instance: int) -> bytes:
    identity = dicomdata.Identity(instance=instance, position_z=float(instance))
    return dicomdata.mr_slice_from_jpeg(real_scan_bytes("glioma", instance), identity=identity, attributes=attributes)


def _study(world, capture, attributes: dict, slices: int = 2, title: str = "MR study") -> list[Scan]:
    case = case_create(created_by=world.staff, patient=world.patient, title=title)
    files = [upload(_mr_slice(attributes, i + 1), f"s{i}.dcm", "application/dicom") for i in range(slices)]
    with capture(execute=False):  # the study job (ingest_study) unpacks it here and now
        outcome = unpack(scans_upload(case=case, uploaded_by=world.staff, uploads=files))
    return outcome.scans


def _text(pdf: bytes) -> str:
    """The PDF's words, one space apart (lines wrap anywhere)."""
    return " ".join(pdf_text(pdf).split())


@pytest.fixture
def t2_study(north, django_capture_on_commit_callbacks) -> list[Scan]:
    """Two T2 slices the model calls "No tumour" at 99 %: the shortcut issue 16 measured."""
    scans = _study(north, django_capture_on_commit_callbacks, T2)
    return [finish_scan(scan, "notumor", 0.99, SHIPPED) for scan in scans]


def test_the_shipped_card_lists_its_validated_sequences() -> None:
    sequences = read_card()["sequences"]
    assert sequences["validated"] == ["t1c"]
    assert "T2" in sequences["figures"]
    assert sequences["figures"]["T2"]["external_validation_part"]["tumour"]["sensitivity"] < 0.95


def test_a_t2_slice_is_recorded_from_its_dicom_attributes_and_not_validated(t2_study) -> None:
    for scan in t2_study:
        assert (scan.sequence, scan.sequence_source) == ("t2", "dicom")
        assert scan.prediction.validated is False


def test_scan_card_and_study_summary_say_not_validated(client, north, t2_study) -> None:
    client.login(username=north.staff.username, password=PASSWORD)
    page = client.get(reverse("case_detail", args=[t2_study[0].case_id])).content.decode()
    assert page.count('data-sequence="t2"><strong>Not validated for T2.</strong>') == 2  # one per scan card
    assert '<p class="low-confidence not-validated" id="study-not-validated" role="alert">' in page
    assert 'the "No tumour" finding is no reassurance' in page
    card = client.get(reverse("scan_card", args=[t2_study[0].pk])).content.decode()
    assert "Not validated for T2." in card
    assert "no reassurance" in card


def test_an_unreassuring_no_tumour_opens_on_the_likeliest_tumours_heatmap(client, north, t2_study) -> None:
    def opens_on(label: str, glioma: float, meningioma: float, validated: bool | None) -> str:
        rest = 1.0 - glioma - meningioma
        probabilities = {"glioma": glioma, "meningioma": meningioma, "notumor": rest * 0.99, "pituitary": rest * 0.01}
        return Prediction(label=label, probabilities=probabilities, validated=validated).heatmap_label

    assert opens_on("notumor", 0.01, 0.005, None) == "notumor"  # confident, sequence unknown: its own map
    assert opens_on("notumor", 0.01, 0.005, True) == "notumor"
    assert opens_on("notumor", 0.01, 0.02, False) == "meningioma"  # not validated: the likeliest tumour
    assert opens_on("notumor", 0.25, 0.1, None) == "glioma"  # low confidence
    assert opens_on("glioma", 0.5, 0.3, False) == "glioma"  # a tumour call keeps its own map
    # On the card: the select opens on that class and says why.
    client.login(username=north.staff.username, password=PASSWORD)
    prediction = t2_study[0].prediction
    assert prediction.label == "notumor"
    expected = prediction.heatmap_label
    assert expected != "notumor"
    card = client.get(reverse("scan_card", args=[t2_study[0].pk])).content.decode()
    assert f'<option value="{expected}" selected>' in card
    assert '<option value="notumor" selected>' not in card
    assert "data-heatmap-why>Opened on " in card


@pytest.mark.parametrize("path", ["one scan", "study lanes", "one pass"])
def test_a_confident_no_tumour_on_t2_gets_its_opening_map_from_the_analysis(
    north, broker, monkeypatch, django_capture_on_commit_callbacks, path
) -> None:
    """The worker tells the analysis which slices sit on a sequence the model is not validated
    for, so the tumour map their card opens on comes from the same pass: no explain() per slice
    (which would nearly double a T2 or FLAIR study's time), on every task path, each slice's
    flag its own (the last slice's sequence is unknown: its confident "No tumour" opens on its
    own map)."""
    scans = _study(north, django_capture_on_commit_callbacks, T2, slices=3)
    Scan.objects.filter(pk=scans[2].pk).update(sequence="unknown")
    stand_in = PixelAnalyzer("notumor", 0.99, SHIPPED)
    stand_in.batch_preferred = path == "one pass"
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: stand_in)
    if path == "one scan":
        outcomes = [tasks.analyze_scan(scan.pk) for scan in scans]
    else:
        outcomes = list(tasks.analyze_scans([scan.pk for scan in scans]).values())
    assert outcomes == ["done", "done", "done"]
    assert (stand_in.unvalidated_given, stand_in.explain_calls) == (2, 0)
    assert stand_in.batch_calls == (0 if path == "one scan" else 1)  # no silent one-by-one fallback
    for scan, t2 in zip(scans, (True, True, False), strict=True):
        prediction = Scan.objects.get(pk=scan.pk).prediction
        assert (prediction.heatmap_label != "notumor") == t2
        stored = ClassHeatmap.objects.filter(prediction=prediction)
        assert [(map.label, map.is_ready) for map in stored] == ([(prediction.heatmap_label, True)] if t2 else [])


def test_worklist_ranks_it_with_low_confidence_tumours(north, t2_study) -> None:
    worklist = {case.pk: case.priority for case in case_worklist(user=north.radiologist)}
    assert worklist[t2_study[0].case_id] == Priority.LOW_CONFIDENCE_TUMOUR
    assert worklist[north.case.pk] == Priority.TUMOUR  # the world's glioma at 0.70: confident
    low = [case.pk for case in case_worklist(user=north.radiologist, filters=WorklistFilters(confidence="low"))]
    assert t2_study[0].case_id in low


def test_worklist_page_names_the_sequence(client, north, t2_study) -> None:
    client.login(username=north.radiologist.username, password=PASSWORD)
    page = client.get(reverse("worklist")).content.decode()
    assert "not validated for T2" in page


def test_pdf_report_says_not_validated(north, t2_study) -> None:
    text = _text(case_report_export(user=north.staff, case_id=t2_study[0].case_id).pdf)
    assert text.count("Not validated for T2.") == 2
    assert "no reassurance" in text
    # The picture says whose map it is (the card opens these on a tumour class instead).
    assert text.count("Heatmap for No tumour: where the model looked") == 2


def test_api_exposes_sequence_source_and_validated(north, t2_study) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(north.staff)}")
    body = api.get(reverse("api:scan-detail", args=[t2_study[0].pk])).json()
    assert (body["sequence"], body["sequence_source"], body["validated"]) == ("t2", "dicom", False)
    assert body["prediction"]["validated"] is False
    world = api.get(reverse("api:scan-detail", args=[north.scan.pk])).json()
    assert (world["sequence"], world["sequence_source"], world["validated"]) == ("unknown", "unknown", None)


def test_a_png_upload_has_an_unknown_sequence_and_no_warning(client, north) -> None:
    assert (north.scan.sequence, north.scan.sequence_source) == ("unknown", "unknown")
    assert north.scan.prediction.validated is None
    client.login(username=north.staff.username, password=PASSWORD)
    assert "Not validated" not in client.get(reverse("scan_card", args=[north.scan.pk])).content.decode()


def test_a_t1_slice_without_contrast_is_not_validated_either(north, django_capture_on_commit_callbacks) -> None:
    (scan,) = _study(north, django_capture_on_commit_callbacks, T1, slices=1)
    scan = finish_scan(scan, "glioma", 0.95, SHIPPED)
    assert (scan.sequence, scan.prediction.validated) == ("t1", False)


def test_another_model_version_makes_no_claim(north, django_capture_on_commit_callbacks) -> None:
    """The card read is the serving model's; a result from another version is not judged by it."""
    (scan,) = _study(north, django_capture_on_commit_callbacks, T2, slices=1)
    scan = finish_scan(scan, "notumor", 0.99, "some-other-model")
    assert scan.sequence == "t2"
    assert scan.prediction.validated is None
