"""The REST API, through HTTP with token auth."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.scans.models import Scan, ScanStatus
from apps.scans.services import scans_upload
from tests.testkit.data import PASSWORD, api_token, finish_scan, upload
from tests.testkit.scans import png_bytes, real_scan_bytes


@pytest.fixture
def api(north):
    client = APIClient()
    response = client.post(reverse("api:token"), {"username": north.staff.username, "password": PASSWORD})
    assert response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


def test_token_refused_for_wrong_password(north):
    response = APIClient().post(reverse("api:token"), {"username": north.staff.username, "password": "nope"})
    assert response.status_code == 400
    assert "token" not in response.json()


def test_token_endpoint_is_throttled_per_client_ip(north, settings):
    # Wrong passwords lock out after AXES_FAILURE_LIMIT (tests/apps/test_login_protection.py);
    # the throttle counts every try, right or wrong, per address.
    url, right = reverse("api:token"), {"username": north.staff.username, "password": PASSWORD}
    codes = [
        APIClient(REMOTE_ADDR="10.0.0.7", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").post(url, right).status_code
        for i in range(10)
    ]
    assert codes == [200] * 10
    # The eleventh try in the minute is refused: a client-sent X-Forwarded-For is not believed
    # (TRUSTED_PROXY_COUNT 0), so changing it each time did not help.
    refused = APIClient(REMOTE_ADDR="10.0.0.7").post(url, right)
    assert refused.status_code == 429
    assert "token" not in refused.json()
    # Another address is not affected.
    assert APIClient(REMOTE_ADDR="10.0.0.8").post(url, right).status_code == 200
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["auth-token"] == "10/min"


def test_anonymous_requests_are_refused(north):
    assert APIClient().get(reverse("api:case-list")).status_code == 401


def test_patient_case_scan_flow(api, north, django_capture_on_commit_callbacks, broker):
    patient = api.post(reverse("api:patient-list"), {"mrn": "API-1", "name": "Api Patient"}, format="json")
    assert patient.status_code == 201
    assert patient.json()["mrn"] == "API-1"
    duplicate = api.post(reverse("api:patient-list"), {"mrn": "API-1", "name": "Again"}, format="json")
    assert duplicate.status_code == 400
    assert "already exists" in duplicate.json()["error"]["fields"]["mrn"][0]

    case = api.post(reverse("api:case-list"), {"patient": patient.json()["id"]}, format="json")
    assert case.status_code == 201
    assert case.json()["status"] == "empty"

    with django_capture_on_commit_callbacks(execute=True):
        scan = api.post(
            reverse("api:case-scans", args=[case.json()["id"]]),
            {"file": upload(real_scan_bytes("pituitary"), "p.jpg")},
            format="multipart",
        )
    assert scan.status_code == 201
    body = scan.json()
    assert body["status"] == "queued"
    assert isinstance(body["id"], int)
    assert [p.args for p in broker()] == [[body["id"]]]

    detail = api.get(reverse("api:scan-detail", args=[body["id"]])).json()
    assert detail["prediction"] is None
    assert detail["overlay_url"] is None
    assert detail["image_url"].endswith(reverse("scans:image", args=[body["id"]]))

    finish_scan(Scan.objects.get(pk=body["id"]), label="pituitary")
    detail = api.get(reverse("api:scan-detail", args=[body["id"]])).json()
    assert detail["status"] == "done"
    assert detail["error"] == ""
    assert detail["prediction"]["label"] == "pituitary"
    assert set(detail["prediction"]["probabilities"]) == {"glioma", "meningioma", "notumor", "pituitary"}
    assert detail["prediction"]["model_version"] == "pixel-test-1"
    assert detail["overlay_url"].startswith("http://testserver/media/scans/")
    assert api.get(detail["overlay_url"]).status_code == 200  # token auth works on media too

    listed = api.get(reverse("api:case-list"), {"label": "pituitary"}).json()
    assert [c["id"] for c in listed["results"]] == [case.json()["id"]]


def test_bad_upload_is_400_with_the_reason(api, north):
    response = api.post(
        reverse("api:case-scans", args=[north.case.pk]),
        {"file": upload(b"GIF89a not really", "fake.jpg")},
        format="multipart",
    )
    assert response.status_code == 400
    assert "fake.jpg: " in response.json()["error"]["message"]
    assert north.case.scans.count() == 1


def test_a_request_with_more_files_than_the_limit_is_refused_before_anything_is_read(api, north, settings):
    files = [upload(png_bytes(), f"scan-{i}.png", "image/png") for i in range(21)]
    response = api.post(reverse("api:case-scans", args=[north.case.pk]), {"file": files}, format="multipart")
    assert response.status_code == 400
    assert north.case.scans.count() == 1
    assert settings.DATA_UPLOAD_MAX_NUMBER_FILES == 20


def test_case_for_another_clinics_patient_is_400(api, south):
    response = api.post(reverse("api:case-list"), {"patient": south.patient.pk}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"patient": ["No such patient."]}


def test_review_by_radiologist_only(north):
    client = APIClient()
    client.force_authenticate(north.staff)
    url = reverse("api:scan-review", args=[north.scan.pk])
    assert client.post(url, {"agrees": True}, format="json").status_code == 403
    client.force_authenticate(north.radiologist)
    response = client.post(url, {"agrees": False, "note": "looks like meningioma"}, format="json")
    assert response.status_code == 200
    assert response.json()["reviewer"] == north.radiologist.username
    assert Scan.objects.get(pk=north.scan.pk).review.agrees is False


def test_review_of_unfinished_scan_is_400(north, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        (queued,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(png_bytes())]).scans
    client = APIClient()
    client.force_authenticate(north.radiologist)
    response = client.post(reverse("api:scan-review", args=[queued.pk]), {"agrees": True}, format="json")
    assert response.status_code == 400
    assert Scan.objects.get(pk=queued.pk).status == ScanStatus.QUEUED


def test_openapi_schema_lists_the_endpoints(client, north):
    client.force_login(north.staff)  # the schema is for signed-in users (issue 15)
    response = client.get(reverse("api:schema"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/auth/token/",
        "/api/patients/",
        "/api/cases/",
        "/api/cases/{case_id}/scans/",
        "/api/scans/{scan_id}/",
    ):
        assert path in paths


def test_schema_and_metrics_are_not_open_to_anonymous_users(client, north, settings):
    """Issue 15 (Low): /api/schema/ needs a signed-in user or a token; /metrics answers only a
    direct scrape from the private network (no proxy header) or the METRICS_TOKEN bearer."""
    anonymous = client.get(reverse("api:schema"), HTTP_ACCEPT="application/json")
    assert anonymous.status_code == 401
    assert set(anonymous.json()) == {"error"}
    token_client = APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(north.staff)}")
    assert token_client.get(reverse("api:schema"), HTTP_ACCEPT="application/json").status_code == 200

    scrape = "django_http_requests_total_by_view_transport_method_total"
    assert scrape in client.get("/metrics", REMOTE_ADDR="10.42.0.7").content.decode()  # a pod scrape
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    for refused in (
        {"REMOTE_ADDR": "203.0.113.9"},  # a public address, straight to gunicorn
        {"REMOTE_ADDR": "10.42.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"},  # through the ingress
        {"REMOTE_ADDR": "10.42.0.1", "HTTP_X_REAL_IP": "203.0.113.9"},
    ):
        response = client.get("/metrics", **refused)
        assert response.status_code == 404, refused
        assert response.json()["error"]["code"] == "not_found"
        assert scrape not in response.content.decode()
    settings.METRICS_TOKEN = "scrape-secret-1"
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", **outside, HTTP_AUTHORIZATION="Bearer scrape-secret-1").status_code == 200
    assert client.get("/metrics", **outside, HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
