"""The worker runtime with the shipped model, on real scans in the formats clinics export."""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mri.card import read_card
from mri.intake.limits import ScanDecodeError
from mri.vocabulary import CLASS_NAMES
from training.data import DEFAULT_DATA

pytestmark = pytest.mark.model

DATA = DEFAULT_DATA


@pytest.fixture(scope="module")
def analyzer():
    from workers.runtime import get_analyzer

    return get_analyzer()


def scan(name: str) -> bytes:
    return (DATA / name).read_bytes()


def as_png(data: bytes, mode: str) -> bytes:
    gray = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    image = {
        "L16": lambda: Image.fromarray(gray.astype(np.uint16) * 257),
        "RGBA": lambda: Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, 255)])),
        "RGB": lambda: Image.fromarray(np.stack([gray] * 3, -1)),
    }[mode]()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data_name", "variant"),
    [
        ("glioma/Tr-glTr_0000.jpg", None),
        ("meningioma/Tr-me_0010.jpg", "RGB"),
        ("pituitary/Tr-pi_0010.jpg", "L16"),
        ("notumor/Tr-no_0010.jpg", "RGBA"),
    ],
)
def test_analyze_returns_the_contract(analyzer, data_name: str, variant: str | None) -> None:
    data = scan(data_name)
    if variant:
        data = as_png(data, variant)
    height, width = np.asarray(Image.open(io.BytesIO(data))).shape[:2]
    result = analyzer.analyze(data)

    assert result.label in CLASS_NAMES
    assert set(result.probabilities) == set(CLASS_NAMES)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert result.label == max(result.probabilities, key=result.probabilities.get)
    assert result.heatmap.shape == (height, width)
    assert result.heatmap.dtype == np.float32
    assert result.heatmap.min() >= 0.0
    assert result.heatmap.max() <= 1.0
    overlay = cv2.imdecode(np.frombuffer(result.overlay_png, np.uint8), cv2.IMREAD_COLOR)
    assert overlay.shape == (height, width, 3)
    assert result.model_version == read_card()["version"]
    assert result.timings_ms["total"] > 0


@pytest.mark.parametrize(
    "name", ["glioma/Tr-gl_0010.jpg", "meningioma/Tr-me_0020.jpg", "pituitary/Tr-pi_0020.jpg"]
)
def test_tumour_scans_get_a_heatmap_that_points_somewhere(analyzer, name: str) -> None:
    result = analyzer.analyze(scan(name))
    assert result.heatmap.max() == pytest.approx(1.0, abs=0.02)
    # Grad-CAM highlights a region, not the whole slice.
    assert (result.heatmap > 0.5).mean() < 0.5


def test_a_bad_file_raises_a_readable_error(analyzer) -> None:
    data = scan("glioma/Tr-glTr_0000.jpg")
    with pytest.raises(ScanDecodeError, match="truncated or corrupt"):
        analyzer.analyze(data[:2000])
    with pytest.raises(ScanDecodeError, match="not a JPEG or PNG"):
        analyzer.analyze(b"this is a text file, not a scan" * 20)


def test_repeated_analysis_keeps_memory_flat(analyzer) -> None:
    data = scan("pituitary/Tr-pi_0030.jpg")

    def rss_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    for _ in range(5):
        analyzer.analyze(data)
    before = rss_mb()
    for _ in range(25):
        analyzer.analyze(data)
    assert rss_mb() - before < 40


BATCH_SCANS = [
    "glioma/Tr-gl_0010.jpg", "meningioma/Tr-me_0020.jpg", "notumor/Tr-no_0010.jpg",
    "pituitary/Tr-pi_0020.jpg", "glioma/Tr-glTr_0000.jpg",
]  # fmt: skip


def test_analyze_batch_equals_analyze_one_by_one(analyzer) -> None:
    """One forward/backward pass for several slices of a study gives each slice the result it
    gets alone (labels, calibrated probabilities and Grad-CAM maps within 1e-3)."""
    datas = [scan(name) for name in BATCH_SCANS]
    datas[2] = as_png(datas[2], "RGB")  # slices of different sizes and formats in one batch
    batch = analyzer.analyze_batch(datas)
    assert len(batch) == len(datas)
    for data, together in zip(datas, batch, strict=True):
        alone = analyzer.analyze(data)
        assert together.label == alone.label
        for name in CLASS_NAMES:
            assert together.probabilities[name] == pytest.approx(alone.probabilities[name], abs=1e-3)
        assert together.heatmap.shape == alone.heatmap.shape
        assert np.abs(together.heatmap - alone.heatmap).max() < 1e-3
        assert together.model_version == alone.model_version
        assert together.timings_ms["inference"] > 0
        # Each slice gets its own out-of-distribution score from the same pass.
        assert np.isfinite(together.ood_score)
        assert together.ood_score == pytest.approx(alone.ood_score, rel=1e-3, abs=1e-3)
        assert together.out_of_distribution == alone.out_of_distribution
    assert {r.label for r in batch} >= {"glioma", "meningioma", "notumor", "pituitary"}
    # Each score names the gate that judged it: the card's threshold and statistics.
    gate = read_card().ood
    assert {(r.ood_threshold, r.ood_gate) for r in batch} == {(gate["threshold"], gate["statistics_sha256"])}
    assert analyzer.analyze_batch([]) == []
    # A CPU worker analyses a study's slices on parallel lanes instead (bench/analyze_batch.py).
    assert analyzer.batch_preferred == (analyzer.device == "GPU")


def test_analyze_batch_of_slices_decoded_already_equals_it_decoding_them(analyzer) -> None:
    """A study lane decodes each slice once, for its text check and its analysis: the pixels it
    hands over give the results the bytes give, and each slice's decode time is the one
    measured when it was decoded."""
    from mri.intake.decode import Decoded, decode_timed

    datas = [scan(name) for name in BATCH_SCANS[:3]]
    decoded = [Decoded(pixels.gray, 7.5 + i) for i, pixels in enumerate(decode_timed(d) for d in datas)]
    given = analyzer.analyze_batch(datas, decoded=decoded)
    for i, (together, alone) in enumerate(zip(given, analyzer.analyze_batch(datas), strict=True)):
        assert together.label == alone.label
        for name in CLASS_NAMES:
            assert together.probabilities[name] == pytest.approx(alone.probabilities[name], abs=1e-5)
        assert np.abs(together.heatmap - alone.heatmap).max() < 1e-4
        assert together.timings_ms["decode"] == 7.5 + i
    with pytest.raises(ValueError, match="2 decoded slices, 3 sequence flags for 3 scans"):
        analyzer.analyze_batch(datas, decoded=decoded[:2])


def test_analyze_of_a_scan_decoded_already_equals_it_decoding_it(analyzer) -> None:
    """The one-scan task decodes a scan once, for its burnt-in text check and its analysis."""
    from mri.intake.decode import Decoded, decode_timed

    data = scan(BATCH_SCANS[0])
    given, alone = analyzer.analyze(data, Decoded(decode_timed(data).gray, 6.5)), analyzer.analyze(data)
    assert given.label == alone.label
    for name in CLASS_NAMES:
        assert given.probabilities[name] == pytest.approx(alone.probabilities[name], abs=1e-6)
    assert np.abs(given.heatmap - alone.heatmap).max() < 1e-5
    assert given.timings_ms["decode"] == 6.5


def test_an_unreassuring_no_tumour_carries_the_likeliest_tumours_map_from_the_same_pass(analyzer) -> None:
    """On a sequence the model is not validated for, a "No tumour" comes with the map of its
    likeliest tumour class (the one its card opens on), equal to what `explain()` gives for that
    class; a confident "No tumour" elsewhere, and a tumour call, come without one; in a batch,
    each slice gets what it gets alone."""
    from mri.vocabulary import NO_TUMOUR

    datas = [scan(name) for name in BATCH_SCANS[:4]]
    flagged = analyzer.analyze_batch(datas, unvalidated=[True] * 4)
    plain = analyzer.analyze_batch(datas)
    (healthy,) = [i for i, result in enumerate(flagged) if result.label == NO_TUMOUR]
    result = flagged[healthy]
    tumours = {name: p for name, p in result.probabilities.items() if name != NO_TUMOUR}
    assert result.tumour_label == max(tumours, key=tumours.get)
    expected = analyzer.explain(datas[healthy], result.tumour_label)
    assert result.tumour_heatmap.shape == result.heatmap.shape
    assert np.abs(result.tumour_heatmap - expected).max() < 1e-3
    assert np.abs(result.tumour_heatmap - result.heatmap).max() > 0.1  # not the No-tumour map again
    alone = analyzer.analyze(datas[healthy], unvalidated=True)
    assert alone.tumour_label == result.tumour_label
    assert np.abs(alone.tumour_heatmap - result.tumour_heatmap).max() < 1e-3
    assert not plain[healthy].low_confidence  # so without the flag it is no reason to open elsewhere
    assert (plain[healthy].tumour_label, plain[healthy].tumour_heatmap) == ("", None)
    for i in set(range(4)) - {healthy}:  # tumour calls open on their own map
        assert (flagged[i].tumour_label, flagged[i].tumour_heatmap) == ("", None)
        assert np.abs(flagged[i].heatmap - plain[i].heatmap).max() < 1e-4
    with pytest.raises(ValueError, match="3 sequence flags for 4 scans"):
        analyzer.analyze_batch(datas, unvalidated=[True] * 3)


def test_analyze_on_several_threads_at_once_gives_each_slice_its_own_result(analyzer) -> None:
    """A CPU worker analyses a study's slices on parallel lanes (workers/tasks.py): analyze()
    called from two threads at once returns what each slice gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    datas = [scan(name) for name in BATCH_SCANS] * 2
    with ThreadPoolExecutor(max_workers=2) as lanes:
        together = list(lanes.map(analyzer.analyze, datas))
    for data, result in zip(datas, together, strict=True):
        alone = analyzer.analyze(data)
        assert result.label == alone.label
        for name in CLASS_NAMES:
            assert result.probabilities[name] == pytest.approx(alone.probabilities[name], abs=1e-5)
        assert np.abs(result.heatmap - alone.heatmap).max() < 1e-4


def test_analyze_batch_raises_for_a_bad_slice(analyzer) -> None:
    good = scan("glioma/Tr-glTr_0000.jpg")
    with pytest.raises(ScanDecodeError, match="not a JPEG or PNG"):
        analyzer.analyze_batch([good, b"this is a text file, not a scan" * 20])
