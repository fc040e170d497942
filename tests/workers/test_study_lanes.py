"""One chunk on a CPU worker's study lane (workers/study_lanes.py), without the database: what
each slice's two futures say when a check finds text, when the task gave a slice up, when the
chunk cannot be analysed whole, when the model is not there. The task's side (holding,
storing, failing each scan) is tests/workers/test_study_batch.py's."""

import pytest

from mri.intake.limits import ScanDecodeError
from tests.testkit.data import PixelAnalyzer
from tests.testkit.scans import real_scan_bytes
from workers.study_lanes import LaneSlice, chunks, run_chunk

NAMED = b"named"  # what the stand-in text check below reads a name in


def _texts(datas: list[bytes]) -> list[str]:
    return ["DOE JANE" if data == NAMED else "" for data in datas]


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
    analyzer.analyze_batch = lambda scans: whole(scans)[:-1]  # a broken batch path
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
