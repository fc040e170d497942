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

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaneSlice:
    """One slice on a lane. `checked`: the lane runs its burnt-in text check (False: a person
    released the scan, or the task checked it already; `text` is then never answered);
    `text`: the check's text; `analysis`: its AnalysisResult, or None when the check found text
    (never analysed). The lane answers both; an error is set on the future it belongs to."""

    data: bytes
    checked: bool
    text: Future[str] = field(default_factory=Future)
    analysis: Future[Any] = field(default_factory=Future)


def chunks(items: Sequence[LaneSlice], size: int) -> list[list[LaneSlice]]:
    """`items` in slice order, `size` at a time (the last chunk shorter)."""
    size = max(1, size)
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def run_chunk(
    chunk: Sequence[LaneSlice], get_analyzer: Callable[[], Any], texts_in: Callable[[list[bytes]], list[str]]
) -> None:
    """Check, then analyse, one chunk (on a lane thread). `get_analyzer`: the process's model (an
    error loading it is each slice's error). `texts_in`: each slice's burnt-in text ("" when
    none) for several slices' bytes at once. A slice whose check raised gets that error on both
    futures (the task checks it again on its own); a slice whose analysis the task cancelled
    meanwhile is skipped; if the chunk cannot be analysed as a whole (an unreadable slice, an
    error), each slice is analysed on its own, so one bad slice fails alone. Whatever happens,
    every future of the chunk is answered before this returns: the task's thread waits on them."""
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
    chunk: Sequence[LaneSlice], get_analyzer: Callable[[], Any], texts_in: Callable[[list[bytes]], list[str]]
) -> None:
    checking = [item for item in chunk if item.checked and item.text.set_running_or_notify_cancel()]
    failed: BaseException | None = None
    if checking:
        try:
            found = texts_in([item.data for item in checking])
            if len(found) != len(checking):
                raise RuntimeError(f"{len(found)} text checks for {len(checking)} slices")
        except Exception as exc:  # handed to the task's thread, which checks each slice again
            failed = exc
            for item in checking:
                item.text.set_exception(exc)
        else:
            for item, text in zip(checking, found, strict=True):
                item.text.set_result(text)
    to_analyse = []
    for item in chunk:
        if not item.analysis.set_running_or_notify_cancel():
            continue
        if item.checked and failed is not None:
            item.analysis.set_exception(failed)
        elif item.checked and item.text.result():
            item.analysis.set_result(None)  # held by the task: never analysed
        else:
            to_analyse.append(item)
    if not to_analyse:
        return
    try:
        analyzer = get_analyzer()
    except Exception as exc:  # each scan's error (the task retries, then fails it)
        for item in to_analyse:
            item.analysis.set_exception(exc)
        return
    if len(to_analyse) > 1:
        try:
            results = analyzer.analyze_batch([item.data for item in to_analyse])
            if len(results) != len(to_analyse):
                raise RuntimeError(f"{len(results)} results for {len(to_analyse)} slices")
        except Exception:  # each slice again on its own, below, so a bad one fails alone
            logger.warning("a chunk of %d slices: analysing one by one", len(to_analyse), exc_info=True)
        else:
            for item, result in zip(to_analyse, results, strict=True):
                item.analysis.set_result(result)
            return
    for item in to_analyse:
        try:
            item.analysis.set_result(analyzer.analyze(item.data))
        except Exception as exc:  # recorded on its own scan by the task
            item.analysis.set_exception(exc)
