"""Agreement over time: the numbers, who may see them, the API, the CSV and the page's chart."""

import csv
import io
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.cases.services import case_soft_delete
from apps.scans.agreement import READINGS_CSV_HEADER, _cell, agreement_by_version
from apps.scans.models import Prediction, Scan
from apps.scans.services import scan_review
from tests.testkit.data import make_case
from tests.testkit.documents import assert_shows


@pytest.fixture
def readings(north, django_capture_on_commit_callbacks):
    """v1: glioma agreed ×2 (one in January 2026), glioma read as meningioma, no tumour read as
    other, meningioma agreed (after an earlier disagreement: only the latest counts).
    v2: pituitary agreed. Plus north's own world scan, never reviewed (not counted)."""

    def scan(label, version, reading=None, month=None, name=None):
        case = make_case(north, django_capture_on_commit_callbacks, [(label, 0.9)], model_version=version)
        result = case.scans.get()
        if name:
            Scan.objects.filter(pk=result.pk).update(original_filename=name)
        if month:
            Prediction.objects.filter(scan=result).update(created_at=month)
        result = Scan.objects.select_related("case", "prediction").get(pk=result.pk)
        if reading is None:
            scan_review(scan=result, reviewer=north.radiologist, agrees=True)
        else:
            scan_review(scan=result, reviewer=north.radiologist, agrees=False, label=reading)
        return result

    january = datetime(2026, 1, 15, 12, tzinfo=UTC)
    scan("glioma", "v1", month=january)
    scan("glioma", "v1")
    scan("glioma", "v1", "meningioma", name='=HYPERLINK("http://x")')
    scan("notumor", "v1", "other")
    changed = scan("meningioma", "v1", "glioma")
    scan_review(scan=changed, reviewer=north.radiologist, agrees=True)
    scan("pituitary", "v2")
    return january


def test_agreement_per_version_class_and_month(north, readings):
    versions = {v.model_version: v for v in agreement_by_version(user=north.radiologist)}
    assert set(versions) == {"v1", "v2"}
    v1 = versions["v1"]
    assert (v1.overall.reviewed, v1.overall.agreed) == (5, 3)
    assert v1.confusion["glioma"] == {"glioma": 2, "meningioma": 1, "notumor": 0, "pituitary": 0, "other": 0}
    assert v1.confusion["notumor"]["other"] == 1
    assert v1.confusion["meningioma"]["meningioma"] == 1  # the latest reading, not the earlier "glioma"
    assert v1.recall == {"glioma": 1.0, "meningioma": 0.5, "notumor": None, "pituitary": None}
    assert v1.read_as["other"] == 1
    this_month = timezone.localtime().strftime("%Y-%m")
    assert [m.month for m in v1.month_list()] == ["2026-01", this_month]
    january, now = v1.month_list()
    assert (january.overall.reviewed, january.overall.agreed) == (1, 1)
    assert (now.overall.reviewed, now.overall.agreed) == (4, 2)
    assert (now.by_class["glioma"].reviewed, now.by_class["glioma"].agreed) == (2, 1)
    assert (versions["v2"].overall.reviewed, versions["v2"].overall.rate) == (1, 1.0)
    only_v2 = agreement_by_version(user=north.radiologist, model_version="v2")
    assert [v.model_version for v in only_v2] == ["v2"]


def test_another_clinic_sees_none_of_it(north, south, readings):
    assert agreement_by_version(user=south.radiologist) == []


@pytest.mark.parametrize("name", ["api:agreement", "api:agreement-readings", "agreement"])
def test_staff_may_not_see_it(north, readings, client, name):
    if name.startswith("api:"):
        api = APIClient()
        api.force_authenticate(north.staff)
        assert api.get(reverse(name)).status_code == 403
    else:
        client.force_login(north.staff)
        assert client.get(reverse(name)).status_code == 403


@pytest.mark.parametrize("role", ["radiologist", "admin"])
def test_api_contract(north, readings, role):
    api = APIClient()
    api.force_authenticate(getattr(north, role))
    body = api.get(reverse("api:agreement")).json()
    assert body["model_labels"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert body["reading_labels"] == ["glioma", "meningioma", "notumor", "pituitary", "other"]
    assert body["label_names"]["notumor"] == "No tumour"
    v1 = next(v for v in body["versions"] if v["model_version"] == "v1")
    assert v1["overall"] == {"reviewed": 5, "agreed": 3, "rate": 0.6}
    assert v1["confusion"]["glioma"]["meningioma"] == 1
    assert v1["recall"]["meningioma"] == 0.5
    assert next(m["month"] for m in v1["months"]) == "2026-01"
    assert v1["months"][0]["by_class"]["glioma"] == {"reviewed": 1, "agreed": 1, "rate": 1.0}
    filtered = api.get(reverse("api:agreement"), {"model_version": "nope"}).json()
    assert filtered["versions"] == []


def test_readings_csv_is_labelled_and_safe_for_spreadsheets(north, readings):
    api = APIClient()
    api.force_authenticate(north.radiologist)
    response = api.get(reverse("api:agreement-readings"), HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "no-store" in response["Cache-Control"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 6
    assert {(r["model_label"], r["reading"]) for r in rows} == {
        ("glioma", "glioma"), ("glioma", "meningioma"), ("notumor", "other"), ("meningioma", "meningioma"),
        ("pituitary", "pituitary"),
    }  # fmt: skip
    assert "file" not in rows[0]  # upload names are often PHI (SURNAME_NAME_MRI.dcm): never exported
    assert all(r["image"].startswith("scans/") and len(r["sha256"]) == 64 for r in rows)
    assert {r["case_signed"] for r in rows} == {"no"}


def _csv_rows(user) -> tuple[str, list[dict[str, str]]]:
    api = APIClient()
    api.force_authenticate(user)
    text = b"".join(api.get(reverse("api:agreement-readings")).streaming_content).decode()
    return text, list(csv.DictReader(io.StringIO(text)))


def test_readings_csv_carries_no_upload_file_names(north, readings):
    Scan.objects.filter(case__clinic=north.clinic).update(original_filename="DOE_JANE_1970-01-01_MRI.dcm")
    text, rows = _csv_rows(north.radiologist)
    assert len(rows) == 6
    assert "DOE_JANE" not in text
    assert "file" not in READINGS_CSV_HEADER


def test_cells_are_safe_for_spreadsheets():
    assert _cell('=HYPERLINK("http://x")') == "'=HYPERLINK(\"http://x\")"
    assert _cell("@SUM(A1)").startswith("'")
    assert _cell("glioma") == "glioma"


def test_deleted_cases_are_gone_from_the_figures_and_the_csv(north, readings, client):
    """A soft-deleted case's readings leave agreement, the API, the page and the CSV; a restore
    brings them back."""
    deleted = Scan.objects.get(case__clinic=north.clinic, prediction__label="pituitary")  # v2's only reading
    case_soft_delete(case=deleted.case, by=north.admin)
    versions = {v.model_version: v for v in agreement_by_version(user=north.radiologist)}
    assert set(versions) == {"v1"}
    assert versions["v1"].overall.reviewed == 5
    api = APIClient()
    api.force_authenticate(north.radiologist)
    body = api.get(reverse("api:agreement")).json()
    assert [v["model_version"] for v in body["versions"]] == ["v1"]
    _, rows = _csv_rows(north.radiologist)
    assert len(rows) == 5
    assert str(deleted.pk) not in {r["scan_id"] for r in rows}
    assert deleted.image.name not in {r["image"] for r in rows}
    client.force_login(north.admin)
    html = client.get(reverse("agreement")).content.decode()
    assert "v2" not in html  # neither in the figures nor in the version filter


def test_page_draws_the_chart_and_the_confusion_matrix(north, readings, client):
    client.force_login(north.admin)
    html = client.get(reverse("agreement")).content.decode()
    assert_shows(
        html, "<svg", "polyline", "2026-01", "v1 · 2026-01: 1 of 1 agree", "No tumour", "Other / non-diagnostic"
    )
    assert "Notumor" not in html
    assert reverse("api:agreement-readings") in html


def test_page_without_readings_says_so(north, client):
    client.force_login(north.radiologist)
    html = client.get(reverse("agreement")).content.decode()
    assert "No reviewed results yet" in html
    assert "<svg" not in html
