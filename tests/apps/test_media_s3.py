"""Scans, heatmaps and overlays in a real S3 bucket (SeaweedFS; the `s3_media` fixture):
written and read through the storage API only, never a local path, served by the
clinic-checked views, removed with their rows, isolated between clinics."""

import io
import uuid

import pytest
import requests
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from PIL import Image

from apps.scans.models import Scan
from apps.scans.services import scans_upload
from clinic_platform.settings.storage import s3_storage
from tests.testkit.data import PixelAnalyzer, api_token, make_world, stored_files, upload
from tests.testkit.scans import real_scan_bytes
from workers import tasks


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.fixture
def s3_north(s3_media, db, django_capture_on_commit_callbacks):
    return make_world("north", django_capture_on_commit_callbacks)


def test_a_scan_its_heatmap_and_overlay_are_objects_in_the_bucket_not_local_files(s3_north, s3_media, media_root):
    scan = s3_north.scan
    keys = set(s3_media.keys())
    assert {scan.image.name, scan.prediction.heatmap.name, scan.prediction.overlay.name} <= keys
    assert stored_files(media_root) == []
    assert default_storage.__class__.__name__ == "S3Storage"
    # Private objects: an unsigned request to the bucket is refused.
    server = s3_media.server
    public = requests.get(f"{server.endpoint_url}/{server.bucket}/{s3_media.prefix}/{scan.image.name}", timeout=10)
    assert public.status_code in (401, 403), public.status_code


def test_the_views_stream_the_objects_to_the_clinic_and_404_to_others(s3_north, s3_media, client, db,
                                                                       django_capture_on_commit_callbacks):  # fmt: skip
    south = make_world("south", django_capture_on_commit_callbacks)
    client.force_login(s3_north.staff)
    image = client.get(reverse("scans:image", args=[s3_north.scan.pk]))
    assert image.status_code == 200
    assert image["Content-Type"] == "image/jpeg"
    assert "no-store" in image["Cache-Control"]
    assert _body(image) == real_scan_bytes()
    for kind in ("overlay", "heatmap"):
        response = client.get(reverse(f"scans:{kind}", args=[s3_north.scan.pk]))
        assert response.status_code == 200
        with Image.open(io.BytesIO(_body(response))) as picture:
            assert picture.size == (s3_north.scan.width, s3_north.scan.height)
        # Another clinic's file in the same bucket is a 404, like a missing one.
        assert client.get(reverse(f"scans:{kind}", args=[south.scan.pk])).status_code == 404
    assert client.get(reverse("scans:image", args=[south.scan.pk])).status_code == 404


def test_a_missing_object_is_a_404_not_a_broken_response(s3_north, client):
    default_storage.delete(s3_north.scan.prediction.overlay.name)
    client.force_login(s3_north.staff)
    assert client.get(reverse("scans:overlay", args=[s3_north.scan.pk])).status_code == 404
    assert client.get(reverse("scans:image", args=[s3_north.scan.pk])).status_code == 200


def test_deleting_a_case_removes_its_objects(s3_north, s3_media, django_capture_on_commit_callbacks):
    assert len(s3_media.keys()) == 3
    with django_capture_on_commit_callbacks(execute=True):
        s3_north.case.delete()
    assert s3_media.keys() == []


def test_the_worker_task_reads_and_writes_through_the_bucket(s3_north, s3_media, media_root, monkeypatch,
                                                              django_capture_on_commit_callbacks):  # fmt: skip
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: PixelAnalyzer("pituitary"))
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(
            case=s3_north.case, uploaded_by=s3_north.staff, uploads=[upload(real_scan_bytes())]
        ).scans
    assert tasks.analyze_scan(scan.pk) == "done"
    scan = Scan.objects.select_related("prediction").get(pk=scan.pk)
    assert scan.prediction.label == "pituitary"
    assert {scan.prediction.heatmap.name, scan.prediction.overlay.name} <= set(s3_media.keys())
    assert stored_files(media_root) == []


def test_media_to_bucket_copies_local_files_once(db, settings, media_root, s3_server, s3_media,
                                                 django_capture_on_commit_callbacks, tmp_path):  # fmt: skip
    s3 = settings.STORAGES["default"]
    # Files written on local disk, as before the move to the bucket.
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
    world = make_world("local", django_capture_on_commit_callbacks)
    local = stored_files(media_root)
    assert len(local) == 3
    settings.STORAGES = {**settings.STORAGES, "default": s3}
    out = io.StringIO()
    call_command("media_to_bucket", stdout=out)
    assert "3 copied" in out.getvalue(), out.getvalue()
    assert set(s3_media.keys()) == {p.relative_to(media_root).as_posix() for p in local}
    scan = Scan.objects.get(pk=world.scan.pk)
    with scan.image.open("rb") as handle:
        assert handle.read() == real_scan_bytes()
    again = io.StringIO()
    call_command("media_to_bucket", stdout=again)
    assert "0 copied, 3 already there" in again.getvalue(), again.getvalue()


def test_ensure_bucket_creates_a_missing_bucket_once(s3_server, settings):
    bucket = f"ensure-{uuid.uuid4().hex[:10]}"
    storage = s3_storage(endpoint_url=s3_server.endpoint_url, bucket=bucket, access_key=s3_server.access_key,
                         secret_key=s3_server.secret_key)  # fmt: skip
    settings.STORAGES = {**settings.STORAGES, "default": storage}
    first, second = io.StringIO(), io.StringIO()
    call_command("ensure_bucket", stdout=first)
    call_command("ensure_bucket", stdout=second)
    assert first.getvalue().strip() == f"bucket {bucket} created"
    assert second.getvalue().strip() == f"bucket {bucket} exists"
    s3_server.client().delete_bucket(Bucket=bucket)


def test_presigned_redirect_mode_sends_a_short_lived_signed_url_after_the_clinic_check(
    s3_north, s3_media, client, settings, django_capture_on_commit_callbacks
):
    from urllib.parse import parse_qs, urlsplit

    settings.MEDIA_PRESIGNED_REDIRECT = True
    south = make_world("south", django_capture_on_commit_callbacks)
    client.force_login(s3_north.staff)
    response = client.get(reverse("scans:image", args=[s3_north.scan.pk]))
    assert response.status_code == 302
    assert "no-store" in response["Cache-Control"]
    url = response["Location"]
    query = parse_qs(urlsplit(url).query)
    assert "X-Amz-Signature" in query
    assert int(query["X-Amz-Expires"][0]) < 60
    assert requests.get(url, timeout=10).content == real_scan_bytes()
    assert client.get(reverse("scans:image", args=[south.scan.pk])).status_code == 404
    # API clients are never redirected anywhere before the checks: a bad token is a 401, another
    # clinic's scan a 404, both in the API's JSON error shape.
    api = Client()
    bad = api.get(reverse("scans:image", args=[s3_north.scan.pk]), HTTP_AUTHORIZATION="Token not-a-token")
    assert (bad.status_code, bad.json()["error"]["code"]) == (401, "not_authenticated"), bad.content
    token = f"Token {api_token(s3_north.staff)}"
    other = api.get(reverse("scans:image", args=[south.scan.pk]), HTTP_AUTHORIZATION=token)
    assert (other.status_code, other.json()["error"]["code"]) == (404, "not_found"), other.content
    own = api.get(reverse("scans:overlay", args=[s3_north.scan.pk]), HTTP_AUTHORIZATION=token)
    assert own.status_code == 302
    assert "X-Amz-Signature" in own["Location"]


def test_a_scan_whose_object_is_gone_fails_with_a_clear_message(s3_north, monkeypatch,
                                                                 django_capture_on_commit_callbacks):  # fmt: skip
    monkeypatch.setattr(tasks, "_get_analyzer", lambda: PixelAnalyzer())
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(
            case=s3_north.case, uploaded_by=s3_north.staff, uploads=[upload(real_scan_bytes())]
        ).scans
    default_storage.delete(scan.image.name)
    assert tasks.analyze_scan(scan.pk) == "failed"
    assert Scan.objects.get(pk=scan.pk).error == "The uploaded file is missing from storage."
