"""De-identification on ingest (PS3.15 Annex E, Basic Application Level Confidentiality
Profile): a dataset carrying every attribute of the profile's table, each with a value that
can be found in bytes, plus private tags and PHI nested in sequences, goes through the upload;
the stored file, and everything else written to storage, must hold none of those values."""

import io

import numpy as np
import pydicom
from dicomanonymizer.simpledicomanonymizer import initialize_actions
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from apps.scans.deidentify import DEIDENTIFICATION_METHOD
from apps.scans.services import scans_upload
from tests.testkit import dicom as dicomdata
from tests.testkit.data import stored_files, upload
from tests.testkit.scans import real_scan_bytes

# Values that are searched for in the stored bytes, by VR (each made unique per attribute).
_TEXT_VRS = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "LT": 200, "ST": 200, "UT": 200, "UC": 200}
# What the file must keep to stay an image we can read.
_KEPT = {"SOPClassUID", "Modality", "Rows", "Columns", "PixelData"}


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
        if tag.group in (0x0000, 0x0002, 0x0004) or not keyword or keyword in _KEPT:
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
        (scan,) = scans_upload(case=north.case, uploaded_by=north.staff, uploads=[upload(data, "phi.dcm")]).scans

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
