"""Review with correction and history: services and the API contract."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from apps.cases.services import case_sign
from apps.scans.models import Scan, ScanReview
from apps.scans.services import scan_review
from tests.testkit.data import make_case


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_new_review_adds_a_row_and_the_latest_counts(north):
    first = scan_review(scan=north.scan, reviewer=north.radiologist, agrees=True, note="typical")
    second = scan_review(scan=north.scan, reviewer=north.radiologist, agrees=False, label="meningioma", note="dural")
    scan = Scan.objects.get(pk=north.scan.pk)
    assert list(scan.reviews.order_by("id").values_list("pk", flat=True)) == [first.pk, second.pk]
    assert scan.review == second
    assert (second.label, second.agrees, first.label) == ("meningioma", False, "glioma")


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"agrees": False}, "label"),  # a correction must say what the scan shows
        ({"agrees": False, "label": "glioma"}, "label"),  # "disagree" with the model's own label
        ({"agrees": True, "label": "pituitary"}, "label"),  # agree, yet another label
        ({"agrees": False, "label": "astrocytoma"}, "label"),  # not in the vocabulary
    ],
)
def test_contradictory_or_unknown_readings_are_refused(north, arguments, field):
    with pytest.raises(ValidationError) as error:
        scan_review(scan=north.scan, reviewer=north.radiologist, **arguments)
    assert field in error.value.message_dict
    assert not ScanReview.objects.exists()


def test_other_non_diagnostic_is_a_reading(north):
    review = scan_review(scan=north.scan, reviewer=north.radiologist, agrees=False, label="other", note="motion")
    assert review.label_name == "Other / non-diagnostic"


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_only_radiologists_review(north, role):
    with pytest.raises(PermissionDenied):
        scan_review(scan=north.scan, reviewer=getattr(north, role), agrees=True)
    response = _api(getattr(north, role)).post(
        reverse("api:scan-reviews", args=[north.scan.pk]), {"agrees": True}, format="json"
    )
    assert response.status_code == 403
    assert not ScanReview.objects.exists()


def test_reviews_api_contract(north):
    client = _api(north.radiologist)
    url = reverse("api:scan-reviews", args=[north.scan.pk])
    assert client.get(url).json() == []
    response = client.post(url, {"agrees": False, "label": "notumor", "note": "artefact"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("label", "label_name", "agrees", "reviewer", "note")} == {
        "label": "notumor",
        "label_name": "No tumour",
        "agrees": False,
        "reviewer": north.radiologist.username,
        "note": "artefact",
    }
    assert body["at"] == body["reviewed_at"]
    assert client.post(url, {"agrees": True}, format="json").status_code == 201

    history = client.get(url).json()
    assert [(r["label"], r["agrees"]) for r in history] == [("notumor", False), ("glioma", True)]
    scan = client.get(reverse("api:scan-detail", args=[north.scan.pk])).json()
    assert {k: scan["review"][k] for k in ("label", "agrees", "reviewer")} == {
        "label": "glioma",
        "agrees": True,
        "reviewer": north.radiologist.username,
    }
    assert scan["review"]["at"]
    assert scan["verified"] is False  # reviewed, but the case is not signed


@pytest.mark.parametrize(
    "payload",
    [{}, {"agrees": "maybe"}, {"agrees": False}, {"agrees": False, "label": "tumour"}, {"agrees": True, "label": 3}],
)
def test_reviews_api_bad_input_is_400_with_a_message(north, payload):
    response = _api(north.radiologist).post(reverse("api:scan-reviews", args=[north.scan.pk]), payload, format="json")
    assert response.status_code == 400
    assert response.json()  # says which field
    assert not ScanReview.objects.exists()


def test_scan_json_review_is_null_before_any_review(north):
    scan = _api(north.staff).get(reverse("api:scan-detail", args=[north.scan.pk])).json()
    assert scan["review"] is None
    assert scan["verified"] is False


def test_unanalysed_scan_cannot_be_reviewed(north, django_capture_on_commit_callbacks):
    case = make_case(north, django_capture_on_commit_callbacks, [None])
    response = _api(north.radiologist).post(
        reverse("api:scan-reviews", args=[case.scans.get().pk]), {"agrees": True}, format="json"
    )
    assert response.status_code == 400


def test_review_on_a_signed_case_needs_an_addendum_which_is_kept(north):
    scan_review(scan=north.scan, reviewer=north.radiologist, agrees=True)
    case_sign(case=north.case, signer=north.radiologist, conclusion="Glioma.")
    url = reverse("api:scan-reviews", args=[north.scan.pk])
    client = _api(north.radiologist)
    refused = client.post(url, {"agrees": False, "label": "meningioma"}, format="json")
    assert refused.status_code == 400
    assert "addendum" in refused.json()["error"]["fields"]
    accepted = client.post(
        url, {"agrees": False, "label": "meningioma", "addendum": "Second read: dural tail."}, format="json"
    )
    assert accepted.status_code == 201
    assert accepted.json()["addendum"] == "Second read: dural tail."
    north.case.refresh_from_db()
    assert [a.text for a in north.case.addenda.all()] == ["Second read: dural tail."]
    assert Scan.objects.get(pk=north.scan.pk).review.label == "meningioma"
    assert ScanReview.objects.filter(scan=north.scan).count() == 2  # the signed reading is kept


def test_legacy_review_endpoint_keeps_its_contract(north):
    """POST scans/{id}/review/ answers 200 and still takes a disagreement without a reading:
    it counts in agreement, not in the confusion matrix or the labelled export."""
    from apps.scans.agreement import agreement_by_version, agreement_readings_csv

    client = _api(north.radiologist)
    url = reverse("api:scan-review", args=[north.scan.pk])
    response = client.post(url, {"agrees": False, "note": "not glioma"}, format="json")
    assert response.status_code == 200
    assert (response.json()["label"], response.json()["agrees"]) == ("", False)
    (version,) = agreement_by_version(user=north.radiologist)
    assert (version.overall.reviewed, version.overall.agreed, version.unlabelled) == (1, 0, 1)
    assert sum(sum(row.values()) for row in version.confusion.values()) == 0
    assert len(list(agreement_readings_csv(user=north.radiologist))) == 1  # the header only
    # The new endpoint insists on the reading.
    assert (
        client.post(reverse("api:scan-reviews", args=[north.scan.pk]), {"agrees": False}, format="json").status_code
        == 400
    )
