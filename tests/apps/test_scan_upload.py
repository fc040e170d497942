"""Upload validation by content, size limits, and nothing half-saved."""

import hashlib
import io
import struct
import zlib

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from PIL import Image

from apps.scans.models import Scan, ScanStatus
from apps.scans.services import scans_upload
from mri.intake.limits import MAX_UPLOAD_BYTES
from tests.testkit.data import stored_files, upload, upload_refusal
from tests.testkit.scans import png_bytes, real_scan_bytes


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height: a decompression bomb's calling card."""
    data = bytearray(png_bytes((64, 64)))
    ihdr = 8  # after the signature: length(4) type(4) data(13) crc(4)
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 8 + 13])) & 0xFFFFFFFF
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


def test_real_jpeg_is_stored_under_an_app_generated_name_with_its_hash(north, media_root, broker):
    data = real_scan_bytes("meningioma", 3)
    scan = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(data, "Smith T1 axial.jpg")]).scans[0]
    assert scan.status == ScanStatus.QUEUED
    assert scan.format == "JPEG"
    assert (scan.width, scan.height) == Image.open(io.BytesIO(data)).size
    assert scan.sha256 == hashlib.sha256(data).hexdigest()
    assert scan.size_bytes == len(data)
    assert scan.original_filename == "Smith T1 axial.jpg"  # kept for display only
    assert scan.image.name.startswith("scans/")
    assert "Smith" not in scan.image.name
    assert scan.image.name.endswith(".jpg")
    assert (media_root / scan.image.name).read_bytes() == data


def test_several_scans_per_case(north):
    scans = scans_upload(
        case=north.case,
        uploaded_by=north.staff,
        uploads=[upload(real_scan_bytes("pituitary", 1)), upload(png_bytes(), "b.png", "image/png")],
    ).scans
    assert [s.format for s in scans] == ["JPEG", "PNG"]
    assert scans[1].image.name.endswith(".png")
    assert north.case.scans.count() == 3


BAD_FILES = {
    "text renamed .jpg": (b"this is not an image at all\n" * 20, "not a JPEG or PNG"),
    "truncated JPEG": (None, "truncated or corrupt"),
    "empty": (b"", "empty"),
    "GIF renamed .jpg": (None, "GIF files are not accepted"),
    "decompression bomb": (png_with_declared_size(40_000, 40_000), "too many pixels"),
    "huge declared size": (png_with_declared_size(9000, 9000), "largest accepted side"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_is_refused_with_a_clear_message_and_nothing_saved(kind, north, media_root, broker):
    data, message = BAD_FILES[kind]
    if kind == "truncated JPEG":
        full = real_scan_bytes()
        data = full[: len(full) // 2]
    elif kind == "GIF renamed .jpg":
        out = io.BytesIO()
        Image.new("L", (100, 100)).save(out, format="GIF")
        data = out.getvalue()
    files_before, scans_before = stored_files(media_root), Scan.objects.count()
    messages = upload_refusal(north, [upload(data, "scan.jpg")])
    assert message in messages[0]
    assert messages[0].startswith("scan.jpg: ")
    assert stored_files(media_root) == files_before
    assert Scan.objects.count() == scans_before
    assert broker() == []


def test_oversize_file_is_refused_before_it_is_read(north, media_root):
    too_big = upload(b"\xff\xd8" + b"\0" * MAX_UPLOAD_BYTES, "big.jpg")
    with pytest.raises(ValidationError, match="the limit is"):
        scans_upload(case=north.case, uploaded_by=north.staff, uploads=[too_big]).scans[0]
    assert Scan.objects.filter(case=north.case).count() == 1


def test_one_bad_file_rejects_the_whole_batch_naming_each_problem(north, media_root):
    files_before = stored_files(media_root)
    messages = upload_refusal(
        north, [upload(real_scan_bytes(), "good.jpg"), upload(b"", "empty.jpg"), upload(b"x" * 99, "junk.png")]
    )
    assert [m.split(":")[0] for m in messages] == ["empty.jpg", "junk.png"]
    assert stored_files(media_root) == files_before
    assert north.case.scans.count() == 1


def test_a_database_failure_mid_batch_leaves_no_rows_and_no_files(north, media_root, monkeypatch):
    # The database is the collaborator that fails here; the cleanup in scans_upload is under test.
    files_before = stored_files(media_root)
    real_save, calls = Scan.save, []

    def failing_save(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 2:
            raise IntegrityError("disk full")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Scan, "save", failing_save)
    with pytest.raises(IntegrityError):
        scans_upload(
            case=north.case,
            uploaded_by=north.staff,
            uploads=[upload(real_scan_bytes()), upload(real_scan_bytes("notumor"))],
        )
    monkeypatch.undo()
    assert len(calls) == 2
    assert north.case.scans.count() == 1
    assert stored_files(media_root) == files_before


def test_upload_to_another_clinics_case_is_refused(north, south, media_root):
    with pytest.raises(PermissionDenied):
        scans_upload(case=south.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes())]).scans[0]
    assert south.case.scans.count() == 1


def test_deleting_a_case_or_a_scan_removes_its_files_after_the_commit(
    north, media_root, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        (second,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(png_bytes(), "b.png")]).scans
    prediction = north.scan.prediction
    files = {media_root / name for name in (north.scan.image.name, prediction.heatmap.name, prediction.overlay.name)}
    files.add(media_root / second.image.name)
    assert set(stored_files(media_root)) == files

    # A deletion that rolls back keeps every file.
    with (  # noqa: PT012
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        Scan.objects.get(pk=second.pk).delete()
        raise RuntimeError("rolled back")
    assert set(stored_files(media_root)) == files

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        Scan.objects.get(pk=second.pk).delete()
    assert (media_root / second.image.name).exists()  # not before the commit
    for callback in callbacks:
        callback()
    assert set(stored_files(media_root)) == files - {media_root / second.image.name}

    with django_capture_on_commit_callbacks(execute=True):
        north.case.delete()  # cascades to the scan and its prediction
    assert stored_files(media_root) == []
