"""Pages as a radiologist and clinic staff meet them in a day (issue 14), through Django's test
client; the browser-side checks are in tests/e2e/test_daily_browser.py."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.cases.models import CaseStatus
from apps.cases.selectors import case_get
from apps.cases.services import case_create
from apps.scans.services import scans_submit
from tests.testkit.data import finish_scan, png_upload, reject_scan


@pytest.fixture
def staff_client(client, world):
    client.force_login(world.staff)
    return client


@pytest.fixture
def rad_client(client, world):
    client.force_login(world.radiologist)
    return client


def _case_with(world, capture, results: list[tuple[str, float] | str]):
    """A case of `world`'s patient: one scan per entry, analysed as (label, probability) or
    "rejected" (not a brain MRI slice)."""
    case = case_create(created_by=world.staff, patient=world.patient, title="Study")
    with capture(execute=False):
        scans = scans_submit(
            case=case, uploaded_by=world.staff, uploads=[png_upload(f"s{i}.png") for i in range(len(results))]
        )
    for scan, result in zip(scans, results, strict=True):
        if result == "rejected":
            reject_scan(scan)
        else:
            finish_scan(scan, *result)
    return case, scans


def _badge(html: str) -> str:
    head = html[html.index('id="case-summary"') :]
    return re.search(r'<span class="badge [a-z]+">([^<]+)</span>', head).group(1)


def test_rejected_images_do_not_relabel_a_case_with_analysed_slices(
    staff_client, world, django_capture_on_commit_callbacks
) -> None:
    results = [("glioma", 0.9), ("glioma", 0.8), ("glioma", 0.95), "rejected", "rejected"]
    case, _ = _case_with(world, django_capture_on_commit_callbacks, results)
    assert case_get(user=world.staff, case_id=case.pk).status == CaseStatus.DONE
    page = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert _badge(page) != "Not brain MRI"
    assert "2 not brain MRI" in page  # still counted
    history = staff_client.get(reverse("history"), {"status": "rejected"}).context["page"]
    assert case.pk not in [c.pk for c in history.object_list]
    # Only rejected images: that case is the one called "not brain MRI".
    only_rejected, _ = _case_with(world, django_capture_on_commit_callbacks, ["rejected", "rejected"])
    page = staff_client.get(reverse("case_detail", args=[only_rejected.pk])).content.decode()
    assert _badge(page) == "Not brain MRI"


def test_study_summary_flags_slices_that_name_different_tumours(
    staff_client, world, django_capture_on_commit_callbacks
) -> None:
    results = [("glioma", 0.9993), ("meningioma", 0.9992), ("pituitary", 0.9991), ("notumor", 0.95)]
    case, scans = _case_with(world, django_capture_on_commit_callbacks, results)
    page = staff_client.get(reverse("case_detail", args=[case.pk])).content.decode()
    summary = page[page.index('id="study-summary"') :]
    assert 'id="study-discordant"' in summary
    assert "Most likely finding" not in summary
    assert 'id="study-finding"' not in summary
    assert "Supporting slices" not in summary
    for scan, name in zip(scans[:3], ("Glioma", "Meningioma", "Pituitary tumour"), strict=True):
        assert f'<a href="#scan-{scan.pk}">Slice' in summary
        assert f"{name} (99.9%)" in summary
    # Tumour slices that agree (beside a no-tumour one) still give the finding.
    results = [("glioma", 0.99), ("glioma", 0.9), ("notumor", 0.9)]
    agreeing, _ = _case_with(world, django_capture_on_commit_callbacks, results)
    summary = staff_client.get(reverse("case_summary", args=[agreeing.pk])).content.decode()
    assert 'id="study-discordant"' not in summary
    assert re.search(r'id="study-finding">Glioma', summary)
