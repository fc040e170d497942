"""Reading what the platform renders, for the tests of pages, reports and DICOM results: a PDF's
text, and the check that a document shows each of a list of phrases."""

from __future__ import annotations

import io

from pypdf import PdfReader


def pdf_text(pdf: bytes) -> str:
    """The text of every page, a line break between pages."""
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def assert_shows(text: str, *phrases: str) -> None:
    """Every phrase is in the text; a failure names all the missing ones at once."""
    missing = [phrase for phrase in phrases if phrase not in text]
    assert not missing, f"not shown: {missing}"
