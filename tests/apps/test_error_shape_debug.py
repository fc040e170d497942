"""Issue 15 (Low): under `make run` (DEBUG) no file route answers Django's HTML debug page:
a missing, another clinic's or a made-up file is a 404 in the one error shape; unmatched URLs
too (the debug page listed every URL pattern), while APPEND_SLASH still redirects; and the
class heatmap's 202/422 carry the one error shape."""

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.scans.models import ClassHeatmap

FILE_ROUTES = ("scans:image", "scans:overlay", "scans:heatmap", "scans:dicom")


def _one_shape(response, status: int) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body["error"]) == {"code", "message", "fields"}
    text = response.content.decode()
    assert "URLconf" not in text
    assert "Traceback" not in text
    return body


@pytest.mark.parametrize("debug", [True, False])
def test_file_routes_answer_the_one_404_never_a_debug_page(north, south, client, settings, debug):
    settings.DEBUG = debug
    client.force_login(north.staff)
    for name in FILE_ROUTES:
        _one_shape(client.get(reverse(name, args=[south.scan.pk])), 404)  # another clinic's
        _one_shape(client.get(reverse(name, args=[999_999])), 404)  # missing
    _one_shape(client.get(reverse("scans:dicom", args=[north.scan.pk])), 404)  # not a DICOM scan
    for path in ("/media/scans/1/original", "/media/", "/media/scans/1/image/../../etc/passwd", "/api/nothing/"):
        _one_shape(client.get(path, HTTP_ACCEPT="application/json"), 404)
    _one_shape(client.get(reverse("api:case-report", args=[south.case.pk])), 404)
    page = client.get("/no-such-page/")
    assert page.status_code == 404
    assert b"URLconf" not in page.content


def test_append_slash_still_redirects(north, client):
    client.force_login(north.staff)
    response = client.get("/patients?page=2")
    assert response.status_code == 301
    assert response["Location"] == "/patients/?page=2"


def test_heatmap_pending_and_failed_answers_carry_the_one_error_shape(north, client, settings):
    settings.DEBUG = True
    client.force_login(north.staff)
    other = next(label for label in ("glioma", "meningioma", "notumor", "pituitary")
                 if label != north.scan.prediction.label)  # fmt: skip
    url = reverse("api:scan-heatmap", args=[north.scan.pk, other])
    pending = _one_shape(client.get(url), 202)
    assert pending["error"]["code"] == "pending"
    ClassHeatmap.objects.filter(prediction=north.scan.prediction, label=other).update(
        error="could not be computed (RuntimeError)", finished_at=timezone.now()
    )
    failed = _one_shape(client.get(url), 422)
    assert failed["error"]["code"] == "heatmap_failed"
    assert failed["error"]["message"] == "could not be computed (RuntimeError)"


def test_a_post_to_no_url_is_the_json_404_not_a_csrf_page(north, client):
    client.force_login(north.staff)
    csrf_client = client.__class__(enforce_csrf_checks=True)
    csrf_client.force_login(north.staff)
    _one_shape(csrf_client.post("/api/cases/-5/scans/", {"x": "1"}), 404)
