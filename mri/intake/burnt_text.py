"""Text burnt into a scan's pixels (a patient's name, a date, an accession number): found by
Tesseract OCR (libtesseract in this process through tesserocr, reading Debian's
`tesseract-ocr-eng` model) so the worker can hold the scan for a person's decision instead of
analysing and showing it. NumPy/OpenCV/Pillow only, no Django.

OCR of a whole 512 px slice costs ~0.5 s (measured), more than analyze() itself, so a cheap
pre-filter runs first: burnt-in text is thin strokes at the image's extreme contrast, lined up
in rows of character-sized marks, outside the head (anatomy makes such marks too). Only those
rows are read, stacked on one page per slice; a slice without any (~85% of the training scans)
costs a few milliseconds. Tesseract runs in-process: a `tesseract` process per check cost
~90 ms of start-up and model loading, more than reading a slice's page (~8 ms); the loaded
readers are kept for the next check, and the GIL is released while one reads.
A word counts as text only when Tesseract reads it with high confidence and it
has 3+ letters or 6+ digits: the noise it reads in anatomy ("ay", "¥") and scanner numbers stay
below that. Measured: bench/burnt_text.py (docs/platform.md).
The functions to call: `burnt_in_text(gray) -> str`, `burnt_in_texts(grays) -> list[str]`.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np
from PIL import Image

MIN_CONFIDENCE = 80  # Tesseract's word confidence (0-100); anatomy read as text stays under it
# A word counts with 3+ letters (a name) or 6+ digits (a date, an ID): orientation markers
# ("L", "R") and the window/level or slice numbers scanners print ("W 726 : L 363") do not.
MIN_LETTERS = 3
MIN_DIGITS = 6
MAX_LINES = 12  # rows read per slice at most (the cost bound for a busy image)
# One check's reading (a chunk's pages: well under a second) stopped after this long, its error
# the check's: a slow read must not hold the study task's lane, nor pass a slice unread.
# Tesseract looks at its deadline between words: a hang inside libtesseract itself is left to
# the task's time limits (the old child process could be killed; measured: a 1 ms deadline on a
# 1476x2598 page raised after 34 ms).
TESSERACT_TIMEOUT_S = 30
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_DIGIT = re.compile(r"\d")


def _stroke_mask(u8: np.ndarray) -> np.ndarray:
    """Thin marks at the image's extreme contrast, bright on dark or dark on bright."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
    bright = cv2.morphologyEx(u8, cv2.MORPH_TOPHAT, kernel)
    dark = cv2.morphologyEx(u8, cv2.MORPH_BLACKHAT, kernel)
    return ((np.maximum(bright, dark) >= 180) * 255).astype(np.uint8)


def _head(u8: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The head's convex hull (the largest bright component, the marks of `mask` left out so
    that text next to the head does not join it): anatomy there makes character-like marks
    that would cost an OCR run on almost every slice."""
    source = u8.copy()
    source[cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0] = 0
    _, bright = cv2.threshold(cv2.GaussianBlur(source, (5, 5), 0), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    head = np.zeros_like(u8)
    if contours:
        largest = max(contours, key=cv2.contourArea)
        cv2.fillConvexPoly(head, cv2.convexHull(largest), 255)
    if head.mean() > 0.9 * 255:  # no dark background around a head (a light page): look everywhere
        head[:] = 0
    return head


def candidate_lines(mask: np.ndarray, head: np.ndarray | None = None) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h) of rows of character-sized marks in a stroke mask, outside `head`
    (the head's hull) by at least half: where text may be."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    glyphs = np.zeros_like(mask)
    for x, y, w, h, area in stats[1:]:
        # A character, or a word whose letters touch: 6-60 px high, some ink in its box (an arc
        # of skull has a big, mostly empty box).
        if 6 <= h <= 60 and area >= 0.15 * w * h:
            glyphs[y : y + h, x : x + w] = 255
    if not glyphs.any():
        return []
    joined = cv2.dilate(glyphs, cv2.getStructuringElement(cv2.MORPH_RECT, (15, 3)))
    _, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    lines = [
        (int(x), int(y), int(w), int(h))
        for x, y, w, h, _ in stats[1:]
        if w >= 2.5 * h
        and 8 <= h <= 80  # a row of several marks, not one
        and (head is None or head[y : y + h, x : x + w].mean() < 128)
    ]
    lines.sort(key=lambda box: box[2], reverse=True)
    return lines[:MAX_LINES]


def _row_crops(u8: np.ndarray, mask: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """The candidate rows, the marks only (the anatomy behind them, which Tesseract reads as
    noise, is blanked), dark on white, each scaled to ~32 px high (small print is read
    better so)."""
    rows = []
    for x, y, w, h in boxes:
        rows_, cols = slice(max(0, y - 2), y + h + 2), slice(max(0, x - 2), x + w + 2)
        crop, marks = u8[rows_, cols].copy(), mask[rows_, cols]
        if marks.any() and crop[marks > 0].mean() > crop.mean():  # bright text: make it dark
            crop = 255 - crop
        crop[cv2.dilate(marks, np.ones((3, 3), np.uint8)) == 0] = 255
        crop = cv2.copyMakeBorder(crop, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=255)
        scale = max(1.0, 32.0 / max(h, 1))
        if scale > 1.0:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        rows.append(crop)
    return rows


def _page(rows: list[np.ndarray]) -> np.ndarray:
    """One slice's candidate rows stacked on one white page: one page per slice, read with the
    other slices' pages of a check (`_read`)."""
    width = max(row.shape[1] for row in rows) + 32
    page = np.full((sum(row.shape[0] + 24 for row in rows) + 24, width), 255, np.uint8)
    top = 24
    for row in rows:
        page[top : top + row.shape[0], 16 : 16 + row.shape[1]] = row
        top += row.shape[0] + 24
    return page


# Where Debian's tesseract-ocr-eng puts its model (requirements/system.txt), unless TESSDATA_PREFIX
# names the folder (then only that one).
_TESSDATA_GLOBS = ("/usr/share/tesseract-ocr/*/tessdata", "/usr/share/tessdata")
# Readers not in use: each loads Tesseract's English model (~90 ms), so they are kept and
# reused by whichever thread checks next; at most one per thread checking at once.
_IDLE_READERS: list = []
_IDLE_LOCK = threading.Lock()


def _tessdata() -> str:
    """The folder holding eng.traineddata: tesserocr's bundled libtesseract looks in "./"."""
    if os.environ.get("TESSDATA_PREFIX"):  # set on purpose: a wrong one is an error, not a fallback
        folders = [os.environ["TESSDATA_PREFIX"]]
    else:
        folders = sorted((found for pattern in _TESSDATA_GLOBS for found in glob.glob(pattern)), reverse=True)
    for folder in folders:
        if os.path.isfile(os.path.join(folder, "eng.traineddata")):
            return folder.rstrip("/") + "/"
    raise OSError(
        f"Tesseract's English model (eng.traineddata) is not in {folders or list(_TESSDATA_GLOBS)}: "
        "install Debian's tesseract-ocr-eng or set TESSDATA_PREFIX"
    )


@contextmanager
def _reader() -> Iterator[Any]:
    """A Tesseract instance of this process (libtesseract in-process, through tesserocr: no
    process to start per check, and the GIL released while it reads), one thread at a time."""
    import tesserocr  # imported here: only worker processes need it

    with _IDLE_LOCK:
        reader = _IDLE_READERS.pop() if _IDLE_READERS else None
    if reader is None:
        # --psm 6 (one block of text: the page's rows) and the LSTM engine, as the CLI was run.
        reader = tesserocr.PyTessBaseAPI(
            path=_tessdata(), lang="eng", psm=tesserocr.PSM.SINGLE_BLOCK, oem=tesserocr.OEM.LSTM_ONLY
        )
    try:
        yield reader
    finally:
        with _IDLE_LOCK:
            _IDLE_READERS.append(reader)


def _words(reader: Any) -> list[tuple[str, float]]:
    """The words of the page just recognised, each with its confidence (0-100)."""
    from tesserocr import RIL, iterate_level

    iterator = reader.GetIterator()
    if iterator is None:  # even a blank page has one: no result at all is a failure, not "no text"
        raise RuntimeError("Tesseract gave no result for a page")
    found = []
    for word in iterate_level(iterator, RIL.WORD):
        text = "" if word.Empty(RIL.WORD) else word.GetUTF8Text(RIL.WORD).strip()
        if text:
            found.append((text, word.Confidence(RIL.WORD)))
    return found


def _looks_like_identity(text: str, confidence: float) -> bool:
    """A word read with high confidence with the letters of a name or the digits of a date/ID."""
    return confidence >= MIN_CONFIDENCE and (
        len(_LETTER.findall(text)) >= MIN_LETTERS or len(_DIGIT.findall(text)) >= MIN_DIGITS
    )


def _read(pages: list[np.ndarray]) -> list[list[str]]:
    """The words Tesseract reads with high confidence that look like a name, a date or an ID, per
    page, each page as if on its own. The pages of one check (a chunk's) share a deadline of
    TESSERACT_TIMEOUT_S; past it the check fails (RuntimeError), never "no text"."""
    deadline = time.monotonic() + TESSERACT_TIMEOUT_S
    words: list[list[str]] = []
    with _reader() as reader:
        for page in pages:
            left_ms = int((deadline - time.monotonic()) * 1000)
            reader.SetImage(Image.fromarray(page))
            if left_ms < 1 or not reader.Recognize(timeout=left_ms):
                raise RuntimeError(f"Tesseract stopped reading: past its {TESSERACT_TIMEOUT_S} s timeout, or failed")
            words.append([text for text, confidence in _words(reader) if _looks_like_identity(text, confidence)])
    return words


def _candidate_rows(gray: np.ndarray) -> list[np.ndarray]:
    """The cheap pre-filter: the rows of one slice worth reading ([] for ~85% of scans)."""
    u8 = (np.clip(gray, 0.0, 1.0) * 255).astype(np.uint8)
    mask = _stroke_mask(u8)
    boxes = candidate_lines(mask, _head(u8, mask))
    return _row_crops(u8, mask, boxes) if boxes else []


def burnt_in_texts(grays: Sequence[np.ndarray]) -> list[str]:
    """`burnt_in_text` of several slices (a study's chunk): each slice's candidate rows on a page
    of its own, the pages read by one Tesseract reader under one deadline (`_read`)."""
    rows = [_candidate_rows(gray) for gray in grays]
    reading = [index for index, found in enumerate(rows) if found]
    texts = [""] * len(grays)
    if reading:
        for index, words in zip(reading, _read([_page(rows[index]) for index in reading]), strict=True):
            texts[index] = " ".join(words)
    return texts


def burnt_in_text(gray: np.ndarray) -> str:
    """The text burnt into a gray image (float, [0, 1], any size), words joined by spaces; ""
    when none. The caller decides what to do (the worker holds the scan); never log the text:
    it is usually patient data."""
    return burnt_in_texts([gray])[0]
