"""Images, overlays and heatmaps are served through clinic-checking views only."""

import io

from django.conf import settings
from django.urls import reverse
from PIL import Image

from apps.scans.services import scans_upload
from tests.testkit.data import api_token, upload
from tests.testkit.scans import png_bytes


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_owner_gets_each_file_with_its_content_type(north, client):
    client.force_login(north.staff)
    image = client.get(reverse("scans:image", args=[north.scan.pk]))
    assert image.status_code == 200
    assert image["Content-Type"] == "image/jpeg"
    assert image["X-Content-Type-Options"] == "nosniff"
    assert _body(image) == north.scan.image.open("rb").read()
    for kind in ("image", "overlay", "heatmap"):
        response = client.get(reverse(f"scans:{kind}", args=[north.scan.pk]))
        assert response.status_code == 200
        # Not kept by the browser either: a shared ward PC must not hold scans after logout.
        cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
        assert {"no-store", "private"} <= cache_control, response["Cache-Control"]
        assert "max-age=0" in cache_control
        if kind != "image":
            assert response["Content-Type"] == "image/png"
            assert Image.open(io.BytesIO(_body(response))).format == "PNG"


def test_png_scan_is_served_as_png_and_overlay_is_404_until_analysed(north, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(png_bytes(), "x.png")]).scans
    client.force_login(north.staff)
    assert client.get(reverse("scans:image", args=[scan.pk]))["Content-Type"] == "image/png"
    assert client.get(reverse("scans:overlay", args=[scan.pk])).status_code == 404


def test_anonymous_browser_is_sent_to_login_and_token_clients_are_served(north, client):
    url = reverse("scans:image", args=[north.scan.pk])
    response = client.get(url, HTTP_ACCEPT="text/html,*/*")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse(settings.LOGIN_URL))
    token = api_token(north.staff)
    assert client.get(url, HTTP_AUTHORIZATION=f"Token {token}").status_code == 200


def test_api_clients_get_401_and_404_in_the_error_shape_never_a_login_redirect(north, south, client):
    url = reverse("scans:image", args=[north.scan.pk])
    for headers in ({"HTTP_AUTHORIZATION": "Token not-a-token"}, {"HTTP_ACCEPT": "application/json"}):
        response = client.get(url, **headers)
        assert response.status_code == 401, headers
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "not_authenticated"
        assert "Token" in response["WWW-Authenticate"]
    auth = {"HTTP_AUTHORIZATION": f"Token {api_token(north.staff)}"}
    for kind in ("image", "overlay", "heatmap"):
        foreign = client.get(reverse(f"scans:{kind}", args=[south.scan.pk]), **auth)
        assert foreign.status_code == 404
        assert foreign.json()["error"]["code"] == "not_found"
        assert south.patient.name not in foreign.content.decode()


def test_files_are_not_reachable_through_media_url(north, client):
    client.force_login(north.staff)
    assert client.get(settings.MEDIA_URL + north.scan.image.name).status_code == 404
