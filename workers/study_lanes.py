"""A CPU worker's study lanes: the slices of one `analyze_scans` task cut into chunks of
STUDY_LANE_BATCH, each chunk run on a lane thread (STUDY_ANALYSIS_LANES of them at once): the
chunk's burnt-in text checks (one Tesseract reader for the chunk's pages), then one `analyze_batch` call
for its slices that hold no text. A lane never touches the database: it answers each slice's
two futures, and the task's own thread holds, stores or fails each scan, in slice order.

Why chunks on lanes (docs/operations.md, bench/analyze_batch.py): on the 2-core hosts measured,
a batch of 4-8 slices costs 0.74-0.81 of one slice at a time per slice, and two lanes side by
side a little less again (one lane's text checks or the task's storing fill the core the other
lane's batch leaves idle). Checks run in the lane, before its analysis, so both lanes start at
once and no slice is analysed before its check says it holds no text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mri.intake.decode import Decoded, decode_timed
from mri.intake.limits import ScanDecodeError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaneSlice:
    """One slice on a lane. `checked`: the lane runs its burnt-in text check (False: a person
    released the scan, or the task checked it already; `text` is then never answered);
    `text`: the check's text; `analysis`: its AnalysisResult, or None when the check found text
    (never analysed). The lane answers both; an error is set on the future it belongs to."""

    data: bytes
    checked: bool
    unvalidated: bool = False  # on a sequence the model is not validated for (Analyzer.analyze_batch)
    text: Future[str] = field(default_factory=Future)
    analysis: Future[Any] = field(default_factory=Future)


def chunks(items: Sequence[LaneSlice], size: int) -> list[list[LaneSlice]]:
    """`items` in slice order, `size` at a time (the last chunk shorter)."""
    size = max(1, size)
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def run_chunk(
    chunk: Sequence[LaneSlice], get_analyzer: Callable[[], Any], texts_in: Callable[[list[np.ndarray]], list[str]]
) -> None:
    """Check, then analyse, one chunk (on a lane thread). `get_analyzer`: the process's model (an
    error loading it is each slice's error). `texts_in`: each slice's burnt-in text ("" when
    none) for several decoded slices at once: each slice is decoded once, here, for its check and
    its analysis. An unreadable slice (ScanDecodeError) has no text and fails alone with that
    message; any other error while decoding fails the chunk's checks, as a check that raised
    does. A slice whose check raised gets that error on both futures (the task checks it again
    on its own); a slice whose analysis the task cancelled meanwhile is skipped; if the rest
    cannot be analysed as a whole, each slice is analysed on its own (from the same pixels), so
    one bad slice fails alone. Whatever happens, every future of the chunk is answered before
    this returns: the task's thread waits on them."""
    try:
        _check_then_analyse(chunk, get_analyzer, texts_in)
    except BaseException as exc:
        logger.exception("a lane's chunk of %d slices stopped", len(chunk))
        for item in chunk:
            for future in (item.text, item.analysis) if item.checked else (item.analysis,):
                if not future.done():
                    future.set_exception(exc)
        raise


def _check_then_analyse(
    chunk: Sequence[LaneSlice], get_analyzer: Callable[[], Any], texts_in: Callable[[list[np.ndarray]], list[str]]
) -> None:
    # Each slice decoded once, here: its text check and its analysis read the same pixels.
    decoded: list[Decoded | ScanDecodeError] = []
    for item in chunk:
        try:
            decoded.append(decode_timed(item.data))
        except ScanDecodeError as exc:  # that slice's analysis fails with its message
            decoded.append(exc)
        # Anything else (memory) raises: run_chunk fails the chunk, the task checks each slice again.
    checking = [i for i, item in enumerate(chunk) if item.checked and item.text.set_running_or_notify_cancel()]
    failed: BaseException | None = None
    if checking:
        try:
            found = texts_in([_gray_or_blank(decoded[i]) for i in checking])
            if len(found) != len(checking):
                raise RuntimeError(f"{len(found)} text checks for {len(checking)} slices")
        except Exception as exc:  # handed to the task's thread, which checks each slice again
            failed = exc
            for i in checking:
                chunk[i].text.set_exception(exc)
        else:
            for i, text in zip(checking, found, strict=True):
                chunk[i].text.set_result(text)
    to_analyse = []
    for item, pixels in zip(chunk, decoded, strict=True):
        if not item.analysis.set_running_or_notify_cancel():
            continue
        if item.checked and failed is not None:
            item.analysis.set_exception(failed)
        elif item.checked and item.text.result():
            item.analysis.set_result(None)  # held by the task: never analysed
        elif isinstance(pixels, ScanDecodeError):
            item.analysis.set_exception(pixels)  # recorded on its own scan by the task
        else:
            to_analyse.append((item, pixels))
    if not to_analyse:
        return
    try:
        analyzer = get_analyzer()
    except Exception as exc:  # each scan's error (the task retries, then fails it)
        for item, _pixels in to_analyse:
            item.analysis.set_exception(exc)
        return
    if len(to_analyse) > 1:
        try:
            results = analyzer.analyze_batch(
                [item.data for item, _ in to_analyse],
                decoded=[pixels for _, pixels in to_analyse],
                unvalidated=[item.unvalidated for item, _ in to_analyse],
            )
            if len(results) != len(to_analyse):
                raise RuntimeError(f"{len(results)} results for {len(to_analyse)} slices")
        except Exception:  # each slice again on its own, below, so a bad one fails alone
            logger.warning("a chunk of %d slices: analysing one by one", len(to_analyse), exc_info=True)
        else:
            for (item, _pixels), result in zip(to_analyse, results, strict=True):
                item.analysis.set_result(result)
            return
    for item, pixels in to_analyse:
        try:
            item.analysis.set_result(analyzer.analyze(item.data, pixels, item.unvalidated))
        except Exception as exc:  # recorded on its own scan by the task
            item.analysis.set_exception(exc)


def _gray_or_blank(pixels: Decoded | ScanDecodeError) -> np.ndarray:
    """The slice's pixels for its text check; an unreadable slice holds no text to find."""
    return pixels.gray if isinstance(pixels, Decoded) else np.zeros((1, 1), np.float32)
