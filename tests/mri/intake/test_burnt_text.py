"""The burnt-in text detector (mri/intake/burnt_text.py) with the real Tesseract: names drawn into
real scans are found, the real scans themselves are not held (the false-hold rate over hundreds
of scans is bench/burnt_text.py's, see docs/platform.md)."""

import io

import numpy as np
import pytest
from PIL import Image

from mri.intake import burnt_text
from mri.intake.burnt_text import burnt_in_text, burnt_in_texts
from mri.intake.decode import decode_gray_bounded
from tests.testkit.scans import real_scan_bytes, with_burnt_text

SCANS = [("glioma", 0), ("meningioma", 3), ("pituitary", 5), ("notumor", 7), ("glioma", 8), ("pituitary", 9)]


@pytest.mark.parametrize(("label", "index"), SCANS)
def test_a_name_burnt_into_a_real_scan_is_found(label, index):
    burnt = with_burnt_text(real_scan_bytes(label, index))
    text = burnt_in_text(decode_gray_bounded(burnt))
    assert "DOE" in text or "JANE" in text


@pytest.mark.parametrize(("label", "index"), SCANS)
def test_the_real_scans_themselves_have_no_text(label, index):
    assert burnt_in_text(decode_gray_bounded(real_scan_bytes(label, index))) == ""


def test_dark_text_on_a_light_background_and_a_bigger_font():
    light = Image.new("L", (400, 300), 235)
    buffer = io.BytesIO()
    light.save(buffer, format="PNG")
    burnt = with_burnt_text(buffer.getvalue(), "SMITH JOHN 12345678", size=20, fill=10)
    text = burnt_in_text(decode_gray_bounded(burnt))
    assert "SMITH" in text
    assert "12345678" in text


def test_scanner_numbers_and_orientation_letters_are_not_a_name():
    """Window/level and slice numbers, L/R markers: text, but no name, date or ID."""
    burnt = with_burnt_text(real_scan_bytes("glioma", 0), "W 726 : L 363   R", size=14)
    assert burnt_in_text(decode_gray_bounded(burnt)) == ""


def test_a_blank_image_costs_no_ocr_and_has_no_text():
    assert burnt_in_text(np.zeros((512, 512), np.float32)) == ""
    assert burnt_in_text(np.ones((64, 64), np.float32)) == ""


def test_a_studys_slices_are_read_in_one_check_and_each_word_stays_with_its_slice(monkeypatch):
    """Two names in two slices of one study, clean slices between them: one read, each slice
    gets its own name (a name given to a neighbour would hold the wrong slice and show the
    named one), and every slice the same answer as on its own."""
    slices = [
        with_burnt_text(real_scan_bytes("glioma", 0)),
        real_scan_bytes("meningioma", 3),
        with_burnt_text(real_scan_bytes("pituitary", 5), "SMITH JOHN 12345678", size=16),
        real_scan_bytes("notumor", 7),
    ]
    grays = [decode_gray_bounded(data) for data in slices]
    alone = [burnt_in_text(gray) for gray in grays]
    runs = []
    read = burnt_text._read
    monkeypatch.setattr(burnt_text, "_read", lambda pages: runs.append(len(pages)) or read(pages))
    together = burnt_in_texts(grays)
    assert runs == [2]  # the two slices the pre-filter passes on, in one read
    assert together == alone
    assert "DOE" in together[0]
    assert "SMITH" not in together[0]
    assert together[1] == together[3] == ""
    assert "SMITH" in together[2]
    assert "DOE" not in together[2]


def test_a_study_without_candidate_rows_costs_no_tesseract_read(monkeypatch):
    runs = []
    monkeypatch.setattr(burnt_text, "_read", lambda page: runs.append(page) or [])
    assert burnt_in_texts([np.zeros((512, 512), np.float32), np.ones((64, 64), np.float32)]) == ["", ""]
    assert burnt_in_texts([]) == []
    assert runs == []


def test_a_tesseract_read_past_its_limit_fails_the_check_and_the_next_check_reads(monkeypatch):
    """A read that outlasts its deadline is stopped, its error the check's (never "no text"),
    and the reader goes back for the next check, which reads normally."""
    burnt = decode_gray_bounded(with_burnt_text(real_scan_bytes("glioma", 0)))
    monkeypatch.setattr(burnt_text, "TESSERACT_TIMEOUT_S", 0.01)  # a chunk of 8 pages takes ~0.1 s
    with pytest.raises(RuntimeError, match="timeout"):
        burnt_in_texts([burnt] * 8)
    monkeypatch.undo()
    assert burnt_text._IDLE_READERS  # the stopped reader is back, not lost
    assert all("DOE" in text for text in burnt_in_texts([burnt] * 8))


def test_the_model_is_found_where_debian_puts_it_and_a_missing_one_is_named(monkeypatch, tmp_path):
    debian = burnt_text._tessdata()
    assert debian.endswith("/tessdata/")
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))  # set on purpose, but no model there
    with pytest.raises(OSError, match="tesseract-ocr-eng"):
        burnt_text._tessdata()
    monkeypatch.setenv("TESSDATA_PREFIX", debian)
    assert burnt_text._tessdata() == debian
    monkeypatch.delenv("TESSDATA_PREFIX")
    monkeypatch.setattr(burnt_text, "_TESSDATA_GLOBS", (str(tmp_path),))
    with pytest.raises(OSError, match="tesseract-ocr-eng"):
        burnt_text._tessdata()
