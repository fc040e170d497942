"""De-identification on ingest (PS3.15 Annex E, Basic Application Level Confidentiality
Profile): a dataset carrying every attribute of the profile's table, each with a value that
can be found in bytes, plus private tags and PHI nested in sequences, goes through the upload;
the stored file, and everything else written to storage, must hold none of those values."""

import io

import numpy as np
import pydicom
import pytest
from dicomanonymizer.simpledicomanonymizer import initialize_actions
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from apps.scans.services import scans_upload
from mri.intake.dicom.deidentify import DEIDENTIFICATION_METHOD
from tests.testkit import dicom as dicomdata
from tests.testkit.data import stored_files, unpack, upload
from tests.testkit.scans import real_scan_bytes

# Values that are searched for in the stored bytes, by VR (each made unique per attribute).
_TEXT_VRS = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "LT": 200, "ST": 200, "UT": 200, "UC": 200}
# What the file must keep to stay an image we can read.
_KEPT = {"SOPClassUID", "Modality", "Rows", "Columns", "PixelData"}
# Kept on purpose (issue 14 item 8): the exam date, unshifted, and free text describing the
# series when it does not name the patient; tested on their own below.
_RETAINED = {"StudyDate", "SeriesDate", "SeriesDescription", "ContrastBolusAgent"}


def _phi_value(vr: str, index: int) -> tuple[object, bytes | None]:
    """A value for the attribute and the bytes that must not survive (None: checked by value)."""
    token = f"PHI{index:04d}"
    if vr in _TEXT_VRS:
        text = token if vr in ("AE", "CS", "SH") else f"{token}SECRET"
        return text, text.encode()
    if vr == "UI":
        uid = f"1.2.826.0.1.3680043.8.498.9{index:05d}"
        return uid, uid.encode()
    if vr == "DA":
        date = f"19{index % 90 + 10:02d}{index % 12 + 1:02d}{index % 27 + 1:02d}"
        return date, None  # short dates repeat among attributes: checked on the attribute
    if vr == "TM":
        return f"{index % 24:02d}1234.5678", None
    if vr == "DT":
        return f"1987{index % 12 + 1:02d}1412{index % 60:02d}00", None
    if vr == "AS":
        return "042Y", None
    if vr == "IS":
        return str(700000000 + index), str(700000000 + index).encode()
    if vr == "DS":
        return f"8765.{index:04d}", f"8765.{index:04d}".encode()
    if vr in ("US", "SS"):
        return index % 30000 + 1, None
    if vr in ("UL", "SL"):
        return 900000 + index, None
    if vr in ("FL", "FD"):
        return 1234.5 + index, None
    if vr in ("OB", "UN"):
        return f"{token}BYTES".encode(), f"{token}BYTES".encode()
    if vr == "UR":
        return f"http://phi{index}.example/", f"phi{index}.example".encode()
    return None, None


def _nested(index: int) -> tuple[Dataset, list[bytes]]:
    item = Dataset()
    item.PatientName = f"NESTED{index:04d}^PHI"
    item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.8{index:05d}"
    return item, [f"NESTED{index:04d}".encode(), item.ReferencedSOPInstanceUID.encode()]


def _phi_dataset() -> tuple[bytes, list[bytes], dict[str, object]]:
    gray = dicomdata.gray_from_jpeg(real_scan_bytes()).astype(np.uint16) << 8
    ds = dicomdata.base_dataset(gray, bits_stored=16, window=(127.5 * 256 + 0.5, 255.0 * 256 + 1))
    forbidden: list[bytes] = []
    by_value: dict[str, object] = {}
    for index, tag in enumerate(sorted(t for t in initialize_actions("dicomfields_2026c") if len(t) == 2)):
        tag = Tag(*tag)
        keyword = keyword_for_tag(tag)
        if tag.group in (0x0000, 0x0002, 0x0004) or not keyword or keyword in _KEPT | _RETAINED:
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        vr = vr.split(" or ")[0]
        if vr == "SQ":
            item, needles = _nested(index)
            setattr(ds, keyword, [item])
            forbidden.extend(needles)
            continue
        value, needle = _phi_value(vr, index)
        if value is None:
            continue
        setattr(ds, keyword, value)
        if needle is not None:
            forbidden.append(needle)
        else:
            by_value[keyword] = value
    # Private tags, with a value that must not survive.
    block = ds.private_block(0x0011, "ACME PHI HOLDER", create=True)
    block.add_new(0x01, "LO", "PRIVATEPHI-SECRET")
    block.add_new(0x02, "SH", "PRIVPHI2")
    forbidden += [b"PRIVATEPHI-SECRET", b"PRIVPHI2", b"ACME PHI HOLDER"]
    return dicomdata.to_bytes(ds), forbidden, by_value


def test_stored_file_has_none_of_the_phi_values(north, media_root, django_capture_on_commit_callbacks):
    data, forbidden, by_value = _phi_dataset()
    original = pydicom.dcmread(io.BytesIO(data))
    assert len(forbidden) > 300  # the table's attributes really are in the test file
    for needle in forbidden:
        assert needle in data, needle  # ... and findable in its bytes
    with django_capture_on_commit_callbacks(execute=False):
        received = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(data, "phi.dcm")])
        (scan,) = unpack(received).scans

    with scan.dicom.open("rb") as handle:
        stored = handle.read()
    leaked = [needle for needle in forbidden if needle in stored]
    assert not leaked, f"{len(leaked)} PHI values left in the stored file, e.g. {leaked[:5]}"
    # Nothing else written to storage holds them either (the original bytes were never stored).
    for path in stored_files(media_root):
        content = path.read_bytes()
        assert not [n for n in forbidden if n in content], path

    dataset = pydicom.dcmread(io.BytesIO(stored))
    for keyword, value in by_value.items():
        if keyword in dataset:
            assert dataset.data_element(keyword).value != value, keyword
    assert not [element for element in dataset.iterall() if element.tag.is_private]
    assert dataset.PatientIdentityRemoved == "YES"
    assert dataset.DeidentificationMethod == DEIDENTIFICATION_METHOD
    assert dataset.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    # Still the same image, and still a valid MR object.
    assert dataset.SOPClassUID == original.SOPClassUID
    np.testing.assert_array_equal(dataset.pixel_array, original.pixel_array)
    assert dataset.file_meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID


def _stored_after_upload(north, capture, data: bytes, name: str = "x.dcm") -> tuple[bytes, pydicom.Dataset]:
    with capture(execute=False):
        (scan,) = unpack(scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(data, name)])).scans
    with scan.dicom.open("rb") as handle:
        stored = handle.read()
    return stored, pydicom.dcmread(io.BytesIO(stored))


def _slice(**attributes: object) -> Dataset:
    gray = dicomdata.gray_from_jpeg(real_scan_bytes()).astype(np.uint16) << 8
    ds = dicomdata.base_dataset(gray, bits_stored=16, window=(127.5 * 256 + 0.5, 255.0 * 256 + 1))
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def test_the_preamble_is_zeroed_whatever_it_held(north, media_root, django_capture_on_commit_callbacks):
    """Issue 15: a preamble reading a patient's name and birth date, and a PE/DICOM polyglot
    (an 'MZ' executable header in the preamble, CVE-2019-11687), are never stored."""
    ds = _slice(PatientName="DOE^JANE", PatientBirthDate="19610203")
    for preamble in (b"PATIENT DOE^JANE BORN 1961-02-03".ljust(128, b" "),
                     b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"This program cannot be run in DOS mode"):
        data = dicomdata.to_bytes(ds)
        data = preamble.ljust(128, b"\x00")[:128] + data[128:]
        assert data[128:132] == b"DICM"
        assert (b"DOE^JANE BORN" in data or data.startswith(b"MZ"))
        stored, _dataset = _stored_after_upload(north, django_capture_on_commit_callbacks, data)
        assert stored[:128] == b"\x00" * 128
        assert stored[128:132] == b"DICM"
        assert b"DOE" not in stored
        assert b"1961" not in stored
        assert b"MZ" not in stored[:132]
        assert b"This program cannot be run" not in stored
    for path in stored_files(media_root):  # the originals were deleted once unpacked
        content = path.read_bytes()
        assert b"DOE^JANE" not in content, path
        assert b"This program cannot be run" not in content, path


def test_only_allow_listed_attributes_survive(north, django_capture_on_commit_callbacks):
    """A public attribute no removal table names, e.g. a made-up (0008,9999), does not survive."""
    ds = _slice()
    ds.add_new(Tag(0x0008, 0x9999), "LO", "MADE-UP-PUBLIC-PHI")
    ds.add_new(Tag(0x0019, 0x0010), "LO", "VENDOR")  # a private creator and its element
    ds.add_new(Tag(0x0019, 0x1001), "LO", "PRIVATE-PHI")
    ds.ScanningSequence, ds.SequenceVariant, ds.RepetitionTime, ds.EchoTime = "SE", "SK", 500.0, 14.0
    ds.InversionTime, ds.InstitutionName, ds.OperatorsName = 2000.0, "ST ELSEWHERE HOSPITAL", "TECH^TOM"
    stored, dataset = _stored_after_upload(north, django_capture_on_commit_callbacks, dicomdata.to_bytes(ds))
    for needle in (b"MADE-UP-PUBLIC-PHI", b"PRIVATE-PHI", b"VENDOR", b"ST ELSEWHERE", b"TECH^TOM"):
        assert needle not in stored
    assert Tag(0x0008, 0x9999) not in dataset
    assert (dataset.ScanningSequence, dataset.SequenceVariant) == ("SE", "SK")
    assert (float(dataset.RepetitionTime), float(dataset.EchoTime), float(dataset.InversionTime)) == (500, 14, 2000)
    assert dataset.PatientIdentityRemoved == "YES"
    assert dataset.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert [str(c.CodeValue) for c in dataset.DeidentificationMethodCodeSequence] == ["113100", "113106"]
    # Type 2 attributes are there, empty.
    assert dataset.PatientName == ""
    assert dataset.PatientID == ""


def test_exam_date_and_anonymous_series_description_are_kept(north, django_capture_on_commit_callbacks):
    """Issue 14 item 8: the exam date orders priors; the series description says what was scanned."""
    ds = _slice(StudyDate="20250914", SeriesDate="20250914", SeriesDescription="AX T1 POST GAD",
                ContrastBolusAgent="Gadobutrol", PatientName="DOE^JANE", PatientID="MRN-555")
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = unpack(scans_upload(case=north.case, uploaded_by=north.staff,
                                      uploads=[upload(dicomdata.to_bytes(ds), "t1.dcm")])).scans
    scan.refresh_from_db()
    assert str(scan.exam_date) == "2025-09-14"
    assert scan.series_description == "AX T1 POST GAD"
    with scan.dicom.open("rb") as handle:
        dataset = pydicom.dcmread(handle)
    assert (dataset.StudyDate, dataset.SeriesDate) == ("20250914", "20250914")
    assert dataset.SeriesDescription == "AX T1 POST GAD"
    assert dataset.ContrastBolusAgent == "Gadobutrol"
    assert "StudyTime" not in dataset or dataset.StudyTime == ""


@pytest.mark.parametrize(
    "description",
    ["DOE JANE T1", "t2_flair_doe", "T1 MRN-555", "T1 born 1961-02-03", "T1 03.02.1961", "T1 19610203"],
)
def test_a_series_description_naming_the_patient_is_dropped(description, north, django_capture_on_commit_callbacks):
    ds = _slice(SeriesDescription=description, ContrastBolusAgent=f"Gd for {description}", PatientName="DOE^JANE",
                PatientID="MRN-555", PatientBirthDate="19610203", StudyDate="20250914")
    with django_capture_on_commit_callbacks(execute=False):
        (scan,) = unpack(scans_upload(case=north.case, uploaded_by=north.staff,
                                      uploads=[upload(dicomdata.to_bytes(ds), "t1.dcm")])).scans
    scan.refresh_from_db()
    assert scan.series_description == ""
    with scan.dicom.open("rb") as handle:
        stored = handle.read()
    assert description.encode() not in stored
    assert str(scan.exam_date) == "2025-09-14"
