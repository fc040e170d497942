"""DICOM in: every transfer syntax, pixel encodings, series and zips, refusals, the API.

DICOM files are built with pydicom from real training scans (tests/dicomdata.py); pydicom's
own bundled files (MR_small*, CT_small) are used as they ship in its wheel.
"""

import io
import zipfile

import numpy as np
import pydicom
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from apps.scans.models import Scan
from apps.scans.services import scans_upload
from mri.intake.decode import decode_gray
from mri.intake.dicom import decode_dicom
from tests.testkit import dicom as dicomdata
from tests.testkit.data import api_token, unpack, upload
from tests.testkit.scans import real_scan_bytes

JPEG = "glioma"


def _dcm(data: bytes, name: str = "slice.dcm"):
    return upload(data, name, "application/dicom")


def _submit(world, *uploads, capture):
    """Upload, then run the worker's unpacking job (the request itself only checks headers)."""
    with capture(execute=False):
        return unpack(scans_upload(case=world.case, uploaded_by=world.staff, uploads=list(uploads)))


def _stored_gray(scan: Scan) -> np.ndarray:
    with scan.image.open("rb") as handle:
        return decode_gray(handle.read())


def _stored_dicom(scan: Scan) -> pydicom.Dataset:
    with scan.dicom.open("rb") as handle:
        return pydicom.dcmread(io.BytesIO(handle.read()))


LOSSY = {"jpeg-baseline": 0.03, "jpeg-extended-12": 0.005, "jpeg-ls-near-lossless": 0.001, "jpeg2000": 0.06}


@pytest.mark.parametrize("key", sorted(dicomdata.TRANSFER_SYNTAXES))
def test_every_transfer_syntax_is_decoded_to_the_jpegs_pixels(key, north, django_capture_on_commit_callbacks):
    jpeg = real_scan_bytes(JPEG, 3)
    data = dicomdata.mr_slice_from_jpeg(jpeg, key=key)
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == dicomdata.TRANSFER_SYNTAXES[key][0]
    outcome = _submit(north, _dcm(data), capture=django_capture_on_commit_callbacks)
    (scan,) = outcome.scans
    assert (scan.format, scan.status, outcome.skipped) == ("DICOM", "queued", [])
    expected = decode_gray(jpeg)
    # The stored rendering (what the worker analyses) is the decoded frame to 1/65535.
    error = np.abs(_stored_gray(scan) - expected)
    assert float(error.max()) <= LOSSY.get(key, 1 / 65535 + 1e-6), key
    assert (scan.width, scan.height) == (expected.shape[1], expected.shape[0])
    stored = _stored_dicom(scan)
    assert stored.PatientIdentityRemoved == "YES"
    assert "DOE" not in str(stored.get("PatientName", ""))


def _gray(index: int = 0) -> np.ndarray:
    return dicomdata.gray_from_jpeg(real_scan_bytes(JPEG, index)).astype(np.float64)


def test_16_bit_signed_with_rescale_and_no_window_gets_the_robust_stretch():
    gray = _gray()
    stored = (gray * 8 - 1024).astype(np.int16)  # signed, negative background like many scanners
    ds = dicomdata.base_dataset(stored, bits_stored=16, signed=True, rescale=(0.5, 512.0))
    (decoded,) = decode_dicom(dicomdata.to_bytes(ds))
    # No window: background black, the head's 99.5th percentile white, as for a JPEG.
    reference = decode_gray(real_scan_bytes(JPEG, 0))
    assert decoded.min() == 0.0
    assert np.corrcoef(decoded.ravel(), reference.ravel())[0, 1] > 0.999
    head = decoded[reference > 0.1]
    assert np.percentile(head, 99.5) == pytest.approx(1.0, abs=0.02)


def test_12_bit_window_and_monochrome1_is_inverted():
    gray = _gray()
    stored = (gray * 16).astype(np.uint16)
    window = (127.5 * 16 + 0.5, 255.0 * 16 + 1.0)
    plain = dicomdata.base_dataset(stored, bits_stored=12, window=window)
    inverted = dicomdata.base_dataset(4095 - stored, bits_stored=12, window=(4095 - window[0] + 1, window[1]),
                                      photometric="MONOCHROME1")
    (a,) = decode_dicom(dicomdata.to_bytes(plain))
    (b,) = decode_dicom(dicomdata.to_bytes(inverted))
    np.testing.assert_allclose(a, gray / 255.0, atol=1e-6)
    np.testing.assert_allclose(b, a, atol=2 / 4095)


def test_planar_configuration_colour_becomes_the_same_gray():
    gray = _gray().astype(np.uint8)
    ds = dicomdata.base_dataset(gray, bits_stored=8)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 1
    ds.PixelData = np.stack([gray, gray, gray]).tobytes()  # planar: all R, then all G, then all B
    (decoded,) = decode_dicom(dicomdata.to_bytes(ds))
    np.testing.assert_allclose(decoded, gray / 255.0, atol=1 / 255)


def test_multi_frame_becomes_one_scan_per_frame_each_with_its_own_deidentified_file(
    north, django_capture_on_commit_callbacks
):
    frames = np.stack([_gray(i) for i in range(3)]).astype(np.uint16) << 8
    ds = dicomdata.base_dataset(frames, bits_stored=16, window=(127.5 * 256 + 0.5, 255.0 * 256 + 1))
    data = dicomdata.to_bytes(dicomdata.encode(ds, "jpeg-ls-lossless"))
    outcome = _submit(north, _dcm(data, "cine"), capture=django_capture_on_commit_callbacks)
    assert [s.original_filename for s in outcome.scans] == [f"cine [frame {i}/3]" for i in (1, 2, 3)]
    for index, scan in enumerate(outcome.scans):
        np.testing.assert_allclose(_stored_gray(scan), _gray(index) / 255.0, atol=1e-4)
        stored = _stored_dicom(scan)
        assert int(stored.get("NumberOfFrames", 1)) == 1
        np.testing.assert_array_equal(stored.pixel_array, frames[index])
    uids = {_stored_dicom(scan).SOPInstanceUID for scan in outcome.scans}
    assert len(uids) == 3


def _series(n: int = 3, *, patient_id: str = "MRN-TEST-1", study: str = "1.2.826.0.1.3680043.8.498.7") -> list[bytes]:
    return [
        dicomdata.mr_slice_from_jpeg(
            real_scan_bytes(JPEG, i),
            key="explicit-le",
            identity=dicomdata.Identity(patient_id=patient_id, study_uid=study, series_uid=f"{study}.1",
                                        instance=i + 1, position_z=2.5 * i),
        )
        for i in range(n)
    ]


def test_zipped_series_is_ordered_by_instance_number_and_lists_what_it_skipped(
    north, django_capture_on_commit_callbacks
):
    ct = dicomdata.bundled("CT_small.dcm")
    archive = dicomdata.series_zip(_series(3), extras={"notes/readme.txt": b"hello", "STUDY/LOCALIZER": ct})
    zipped = upload(archive, "study.zip", "application/zip")
    outcome = _submit(north, zipped, capture=django_capture_on_commit_callbacks)
    assert [s.instance_number for s in outcome.scans] == [1, 2, 3]
    for index, scan in enumerate(outcome.scans):
        np.testing.assert_allclose(_stored_gray(scan), _gray(index) / 255.0, atol=1e-4)
    reasons = {item.name.split("/", 1)[1]: item.reason for item in outcome.skipped}
    assert "index" in reasons["DICOMDIR"]
    assert reasons["notes/readme.txt"] == "not a DICOM file"
    assert "Modality CT" in reasons["STUDY/LOCALIZER"]
    # One study, one de-identified series UID, the same for every slice, not the original.
    series = {scan.series_uid for scan in outcome.scans}
    assert len(series) == 1
    assert "1.2.826.0.1.3680043.8.498.7" not in series.pop()


def test_uids_are_replaced_consistently_across_uploads_of_one_study(north, django_capture_on_commit_callbacks):
    first, second = _series(2)
    a = _submit(north, _dcm(first), capture=django_capture_on_commit_callbacks).scans[0]
    b = _submit(north, _dcm(second), capture=django_capture_on_commit_callbacks).scans[0]
    da, db = _stored_dicom(a), _stored_dicom(b)
    assert da.StudyInstanceUID == db.StudyInstanceUID != "1.2.826.0.1.3680043.8.498.7"
    assert da.SeriesInstanceUID == db.SeriesInstanceUID == a.series_uid
    assert da.FrameOfReferenceUID == db.FrameOfReferenceUID
    assert da.SOPInstanceUID != db.SOPInstanceUID
    assert da.file_meta.MediaStorageSOPInstanceUID == da.SOPInstanceUID
    # Slices of one series uploaded separately still list in slice order on the case.
    from apps.scans.selectors import scan_list_for_case

    ordered = [s.pk for s in scan_list_for_case(case=north.case) if s.format == "DICOM"]
    assert ordered == [a.pk, b.pk]


@pytest.mark.parametrize(
    "name",
    ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
     "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_expb.dcm"],
)
def test_pydicoms_mr_small_is_accepted(name, north, django_capture_on_commit_callbacks):
    (scan,) = _submit(north, _dcm(dicomdata.bundled(name), "mr"), capture=django_capture_on_commit_callbacks).scans
    assert (scan.width, scan.height, scan.format) == (64, 64, "DICOM")
    reference = decode_dicom(dicomdata.bundled("MR_small.dcm"))[0]
    np.testing.assert_allclose(_stored_gray(scan), reference, atol=1e-4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (lambda: dicomdata.bundled("CT_small.dcm"), "Modality CT: only MR images"),
        (lambda: dicomdata.bundled("rtplan.dcm"), "Modality RTPLAN"),
        (lambda: _without_pixels(), "no pixel data"),
        (lambda: b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + b"garbage" * 20, "claims to be DICOM"),
        (lambda: b"not an image, whatever the name says" * 10, "not DICOM"),
        (lambda: dicomdata.bundled("MR_truncated.dcm"), "cannot be decoded"),
        (lambda: _burned_in(), "Burned In Annotation = YES"),
    ],
    ids=["ct", "rtplan", "no-pixels", "pretender", "text-named-dcm", "truncated", "burned-in"],
)
def test_refused_with_a_400_naming_the_reason(data, message, north, django_capture_on_commit_callbacks):
    with pytest.raises(ValidationError) as refused:
        _submit(north, _dcm(data(), "x.dcm"), capture=django_capture_on_commit_callbacks)
    assert message in " ".join(refused.value.messages)
    assert not Scan.objects.filter(format="DICOM").exists()


def _burned_in() -> bytes:
    ds = dicomdata.base_dataset(_gray().astype(np.uint8), bits_stored=8)
    ds.BurnedInAnnotation = "YES"
    return dicomdata.to_bytes(ds)


def _without_pixels() -> bytes:
    ds = dicomdata.base_dataset(_gray().astype(np.uint8), bits_stored=8)
    del ds.PixelData
    return dicomdata.to_bytes(ds)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_zip_limits_nested_zips_and_empty_studies(north, settings, django_capture_on_commit_callbacks):
    def refused(data: bytes) -> str:
        with pytest.raises(ValidationError) as error:
            _submit(north, upload(data, "s.zip", "application/zip"), capture=django_capture_on_commit_callbacks)
        return " ".join(error.value.messages)

    slices = _series(2)
    assert "zip inside a zip" in refused(_zip({"a.dcm": slices[0], "inner.zip": _zip({"b.dcm": slices[1]})}))
    assert "no MR DICOM image" in refused(_zip({"readme.txt": b"x", "ct.dcm": dicomdata.bundled("CT_small.dcm")}))
    # A bomb: 60 MB of zeros in a few kB; the declared total is over the cap before anything is read.
    settings.DICOM_ZIP_MAX_UNCOMPRESSED_BYTES = 50 * 2**20
    bomb = _zip({f"z{i}.dcm": b"\0" * (20 * 2**20) for i in range(3)})
    assert len(bomb) < 200_000
    assert "unpacks to 60.0 MB" in refused(bomb)
    settings.DICOM_ZIP_MAX_MEMBERS = 2
    assert "at most 2 are accepted" in refused(_zip({f"{i}.dcm": slices[0] for i in range(3)}))
    assert not Scan.objects.filter(format="DICOM").exists()


def test_patient_id_other_than_the_mrn_is_stored_with_a_warning(north, django_capture_on_commit_callbacks):
    (matching,) = _submit(north, _dcm(_series(1, patient_id=north.patient.mrn)[0]),
                          capture=django_capture_on_commit_callbacks).scans
    (other,) = _submit(north, _dcm(_series(1, patient_id="SOMEONE-ELSE")[0]),
                       capture=django_capture_on_commit_callbacks).scans
    assert not matching.patient_id_mismatch
    assert other.patient_id_mismatch
    assert other.source_patient_id == "SOMEONE-ELSE"
    assert "SOMEONE-ELSE" not in _stored_dicom(other).to_json()  # only in our database


def test_jpeg_and_png_uploads_are_unchanged(north, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = scans_upload(
            case=north.case, uploaded_by=north.staff, uploads=[upload(real_scan_bytes(), "a.jpg")]
        ).scans
    assert (scan.format, scan.dicom.name, scan.get_dicom_url()) == ("JPEG", "", None)


# API ---------------------------------------------------------------------------------------


@pytest.fixture
def api(north):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(north.staff)}")
    return client


def test_api_takes_repeated_files_and_zips_and_says_what_it_skipped(api, north, django_capture_on_commit_callbacks):
    """DICOM answers at once with its study (issue 15/19: the request only checks headers); the
    worker's job unpacks it; the case's API shows the study's progress and then its scans.
    (Changed on purpose: a single DICOM file used to answer with its scan.)"""
    from apps.scans.models import StudyUpload
    from tests.testkit.data import unpack_study

    url = reverse("api:case-scans", args=[north.case.pk])
    slices = _series(3)
    with django_capture_on_commit_callbacks(execute=False):
        single = api.post(url, {"file": _dcm(slices[0], "one")}, format="multipart")
        several = api.post(
            url,
            {"file": [upload(dicomdata.series_zip(slices[1:]), "s.zip", "application/zip"),
                      upload(real_scan_bytes(), "b.jpg")]},
            format="multipart",
        )
        bad = api.post(url, {"file": [_dcm(dicomdata.bundled("CT_small.dcm"), "ct.dcm")]}, format="multipart")
    assert single.status_code == 201, single.content
    (received,) = single.json()["studies"]
    assert single.json()["scans"] == []
    assert (received["status"], received["slices_total"], received["slices_done"]) == ("received", 1, 0)
    assert several.status_code == 201, several.content
    body = several.json()
    assert [s["format"] for s in body["scans"]] == ["JPEG"]
    assert body["scans"][0]["dicom_url"] is None
    assert {s["name"].split("/", 1)[1] for s in body["skipped"]} == {"DICOMDIR"}
    assert body["studies"][0]["slices_total"] == 2
    assert bad.status_code == 400
    assert "Modality CT" in str(bad.json())

    case_url = reverse("api:case-detail", args=[north.case.pk])
    assert [s["status"] for s in api.get(case_url).json()["studies"]] == ["received", "received"]
    with django_capture_on_commit_callbacks(execute=False):
        for study in StudyUpload.objects.order_by("pk"):
            unpack_study(study)
    studies = api.get(case_url).json()["studies"]
    assert [(s["status"], s["slices_total"], s["slices_done"]) for s in studies] == [("analysing", 1, 0),
                                                                                     ("analysing", 2, 0)]
    # The DICOMDIR the request passed over is listed once, not again by the unpack.
    assert [item["name"].split("/", 1)[1] for item in studies[1]["skipped"]] == ["DICOMDIR"]
    # The cheap answer to poll: the same studies, without the case's scans.
    assert api.get(reverse("api:case-studies", args=[north.case.pk])).json() == studies
    assert studies[0]["progress"] == "0 of 1 slices analysed."
    dicom_scans = [s for s in api.get(case_url).json()["scans"] if s["format"] == "DICOM"]
    assert sorted(s["instance_number"] for s in dicom_scans) == [1, 2, 3]
    one = next(s for s in dicom_scans if s["study_upload"] == received["id"])
    assert one["status"] == "queued"

    detail = api.get(reverse("api:scan-detail", args=[one["id"]])).json()
    assert detail["dicom_url"].endswith(f"/media/scans/{one['id']}/dicom")
    served = api.get(detail["dicom_url"])
    assert served.status_code == 200
    assert served["Content-Type"] == "application/dicom"
    assert served["Cache-Control"].startswith("max-age=0") or "no-store" in served["Cache-Control"]
    dataset = pydicom.dcmread(io.BytesIO(b"".join(served.streaming_content)))
    assert dataset.PatientIdentityRemoved == "YES"
    assert str(dataset.PatientID) != "MRN-TEST-1"
    jpeg_scan = api.get(reverse("scans:dicom", args=[north.scan.pk]))
    assert jpeg_scan.status_code == 404


def test_enhanced_multi_frame_uses_each_frames_rescale_and_window(north, django_capture_on_commit_callbacks):
    """Enhanced MR keeps rescale and window per frame in functional groups, not at the top."""
    gray = [_gray(i) for i in range(3)]
    slopes = (1.0, 2.0, 4.0)
    # Stored values differ per frame; each frame's slope brings them back to one 0..255 scale.
    frames = np.stack([(g * 16 / s).round() for g, s in zip(gray, slopes, strict=True)]).astype(np.uint16)
    ds = dicomdata.base_dataset(frames, bits_stored=16)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = dicomdata.ENHANCED_MR_IMAGE_STORAGE
    items = []
    for slope in slopes:
        transform, voi, item = pydicom.Dataset(), pydicom.Dataset(), pydicom.Dataset()
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = slope, 0, "US"
        voi.WindowCenter, voi.WindowWidth = 127.5 * 16 + 0.5, 255.0 * 16 + 1
        item.PixelValueTransformationSequence, item.FrameVOILUTSequence = [transform], [voi]
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = items
    outcome = _submit(north, _dcm(dicomdata.to_bytes(ds), "enhanced.dcm"), capture=django_capture_on_commit_callbacks)
    assert len(outcome.scans) == 3
    for index, scan in enumerate(outcome.scans):
        np.testing.assert_allclose(_stored_gray(scan), (frames[index] * slopes[index]) / (255 * 16), atol=1e-4)
        stored = _stored_dicom(scan)
        (group,) = stored.PerFrameFunctionalGroupsSequence
        assert float(group.PixelValueTransformationSequence[0].RescaleSlope) == slopes[index]
        # The stored single-frame file decodes to the same picture on its own.
        np.testing.assert_allclose(decode_dicom(_read(scan.dicom))[0], _stored_gray(scan), atol=1e-4)


def _read(field) -> bytes:
    with field.open("rb") as handle:
        return handle.read()


def test_a_jpeg_named_dcm_is_taken_as_the_jpeg_it_is(north, django_capture_on_commit_callbacks):
    (scan,) = _submit(north, _dcm(real_scan_bytes(), "IMG0001.dcm"), capture=django_capture_on_commit_callbacks).scans
    assert scan.format == "JPEG"


def test_a_signed_case_takes_a_dicom_study_only_with_an_addendum(north, django_capture_on_commit_callbacks):
    from apps.cases.services import case_sign
    from apps.scans.services import scan_review

    scan_review(scan=north.scan, reviewer=north.radiologist, agrees=True)
    case_sign(case=north.case, signer=north.radiologist, conclusion="Glioma.")
    north.case.refresh_from_db()
    archive = upload(dicomdata.series_zip(_series(2)), "s.zip", "application/zip")
    # Only radiologists add scans (an addendum) to a signed case (issue 15).
    with pytest.raises(ValidationError, match="addendum"), django_capture_on_commit_callbacks(execute=False):
        scans_upload(case=north.case, uploaded_by=north.radiologist, uploads=[archive])
    assert not Scan.objects.filter(format="DICOM").exists()
    with django_capture_on_commit_callbacks(execute=False):
        outcome = unpack(scans_upload(
            case=north.case, uploaded_by=north.radiologist, uploads=[archive], addendum="Follow-up series from PACS."
        ))  # fmt: skip
    assert [s.instance_number for s in outcome.scans] == [1, 2]
