"""One chunk on a CPU worker's study lane (workers/study_lanes.py), without the database: what
each slice's two futures say when a check finds text, when the task gave a slice up, when the
chunk cannot be analysed whole, when the model is not there. The task's side (holding,
storing, failing each scan) is tests/workers/test_study_batch.py's."""

import numpy as np
import pytest

from mri.intake.decode import decode_gray_bounded, decode_timed
from mri.intake.limits import ScanDecodeError
from tests.testkit.data import PixelAnalyzer
from tests.testkit.scans import real_scan_bytes
from workers import study_lanes
from workers.study_lanes import LaneSlice, chunks, run_chunk

NAMED = real_scan_bytes("meningioma", 7)  # the slice the stand-in text check below reads a name in
NAMED_PIXELS = decode_gray_bounded(NAMED)


def _texts(grays: list[np.ndarray]) -> list[str]:
    return ["DOE JANE" if np.array_equal(gray, NAMED_PIXELS) else "" for gray in grays]


def test_chunks_keep_slice_order_and_the_last_is_shorter():
    items = [LaneSlice(bytes([i]), checked=True) for i in range(5)]
    assert [[item.data for item in chunk] for chunk in chunks(items, 2)] == [[b"\0", b"\1"], [b"\2", b"\3"], [b"\4"]]
    assert chunks(items, 0) == [[item] for item in items]


def test_a_named_slice_is_never_analysed_and_the_rest_go_in_one_call():
    analyzer = PixelAnalyzer()
    chunk = [
        LaneSlice(real_scan_bytes("glioma", 1), checked=True),
        LaneSlice(NAMED, checked=True),
        LaneSlice(real_scan_bytes("glioma", 2), checked=False),  # released by a person: not checked
    ]
    run_chunk(chunk, lambda: analyzer, _texts)
    assert [item.text.result() for item in chunk[:2]] == ["", "DOE JANE"]
    assert not chunk[2].text.done()
    assert chunk[1].analysis.result() is None
    assert chunk[0].analysis.result().label == chunk[2].analysis.result().label == "glioma"
    assert (analyzer.batch_calls, analyzer.calls) == (1, 0)


def test_each_slice_is_decoded_once_for_its_check_and_its_analysis(monkeypatch):
    """The text check reads the pixels the analysis is then handed (bytes decoded twice cost a
    study ~5 ms a slice on two cores); an unreadable slice's check sees no text."""
    analyzer, decodes, checked = PixelAnalyzer(), [], []
    monkeypatch.setattr(study_lanes, "decode_timed", lambda data: decodes.append(data) or decode_timed(data))
    datas = [real_scan_bytes("glioma", 1), b"not an image", real_scan_bytes("glioma", 2), real_scan_bytes("glioma", 3)]
    chunk = [LaneSlice(data, checked=True) for data in datas]
    run_chunk(chunk, lambda: analyzer, lambda grays: checked.extend(grays) or [""] * len(grays))
    assert decodes == datas
    blank = np.zeros((1, 1), np.float32)
    expected = [decode_gray_bounded(d) if i != 1 else blank for i, d in enumerate(datas)]
    assert len(checked) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(checked, expected, strict=True))
    assert (analyzer.batch_calls, analyzer.calls, analyzer.decoded_given) == (1, 0, 3)
    with pytest.raises(ScanDecodeError):
        chunk[1].analysis.result()
    assert [chunk[i].analysis.result().label for i in (0, 2, 3)] == ["glioma"] * 3


def test_an_error_decoding_other_than_an_unreadable_file_fails_the_chunk_for_the_task_to_redo(monkeypatch):
    """Memory running out while a slice is decoded is not "this file is unreadable": every
    future of the chunk gets the error, so the task checks and analyses each slice again."""

    def decode(data):
        if data == NAMED:
            raise MemoryError("no room")
        return decode_timed(data)

    monkeypatch.setattr(study_lanes, "decode_timed", decode)
    chunk = [LaneSlice(real_scan_bytes("glioma", 1), checked=True), LaneSlice(NAMED, checked=True)]
    with pytest.raises(MemoryError):
        run_chunk(chunk, PixelAnalyzer, _texts)
    for item in chunk:
        for future in (item.text, item.analysis):
            with pytest.raises(MemoryError):
                future.result()


def test_a_slice_the_task_gave_up_is_not_analysed():
    analyzer = PixelAnalyzer()
    chunk = [LaneSlice(real_scan_bytes("glioma", i), checked=True) for i in (1, 2)]
    assert chunk[0].analysis.cancel()
    run_chunk(chunk, lambda: analyzer, _texts)
    assert chunk[0].analysis.cancelled()
    assert chunk[1].analysis.result().label == "glioma"
    assert (analyzer.batch_calls, analyzer.calls) == (0, 1)


def test_an_unreadable_slice_fails_alone_and_its_neighbours_are_analysed():
    analyzer = PixelAnalyzer()
    chunk = [LaneSlice(data, checked=True) for data in (real_scan_bytes("glioma", 1), b"not an image")]
    run_chunk(chunk, lambda: analyzer, _texts)
    assert chunk[0].analysis.result().label == "glioma"
    with pytest.raises(ScanDecodeError):
        chunk[1].analysis.result()


def test_a_failed_check_is_each_slices_error_and_nothing_is_analysed():
    analyzer = PixelAnalyzer()
    chunk = [LaneSlice(real_scan_bytes("glioma", i), checked=True) for i in (1, 2)]

    def broken(datas):
        raise OSError("tesseract is not installed")

    run_chunk(chunk, lambda: analyzer, broken)
    for item in chunk:
        with pytest.raises(OSError, match="tesseract"):
            item.text.result()
        with pytest.raises(OSError, match="tesseract"):
            item.analysis.result()
    assert (analyzer.batch_calls, analyzer.calls) == (0, 0)


def test_a_model_that_does_not_load_is_each_slices_error():
    chunk = [LaneSlice(real_scan_bytes("glioma", 1), checked=True), LaneSlice(NAMED, checked=True)]

    def missing():
        raise FileNotFoundError("model.keras")

    run_chunk(chunk, missing, _texts)
    with pytest.raises(FileNotFoundError):
        chunk[0].analysis.result()
    assert chunk[1].analysis.result() is None  # held all the same


def test_a_batch_with_a_result_missing_is_analysed_one_by_one():
    analyzer = PixelAnalyzer()
    whole = analyzer.analyze_batch
    analyzer.analyze_batch = lambda *batch, **given: whole(*batch, **given)[:-1]  # a broken batch path
    chunk = [LaneSlice(real_scan_bytes("glioma", i), checked=True) for i in (1, 2, 3)]
    run_chunk(chunk, lambda: analyzer, _texts)
    assert [item.analysis.result().label for item in chunk] == ["glioma"] * 3


def test_a_check_with_an_answer_missing_fails_every_check_of_the_chunk():
    chunk = [LaneSlice(real_scan_bytes("glioma", i), checked=True) for i in (1, 2)]
    run_chunk(chunk, PixelAnalyzer, lambda datas: [""])
    for item in chunk:
        with pytest.raises(RuntimeError, match="1 text checks for 2 slices"):
            item.analysis.result()


def test_whatever_stops_a_lane_every_future_of_its_chunk_is_answered():
    """The task's thread waits on each future: one left pending would hang the task."""

    class Stop(BaseException):
        pass

    def stopped(datas):
        raise Stop

    chunk = [LaneSlice(real_scan_bytes("glioma", 1), checked=True), LaneSlice(b"x", checked=False)]
    with pytest.raises(Stop):
        run_chunk(chunk, PixelAnalyzer, stopped)
    assert all(future.done() for item in chunk for future in (item.analysis, *([item.text] * item.checked)))
    with pytest.raises(Stop):
        chunk[1].analysis.result()
