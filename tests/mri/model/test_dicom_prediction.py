"""The shipped model reads a DICOM made from a JPEG scan as it reads that JPEG: same label,
calibrated probabilities within 0.02. Both ways a DICOM reaches the model are checked: the
DICOM bytes themselves (`analyze` decodes them with mri.intake.dicom) and the 16-bit PNG the
upload stores for the worker (apps/scans/ingest.py)."""
from __future__ import annotations

import pytest

from apps.scans.ingest import dicom_slices
from mri.vocabulary import CLASS_NAMES
from tests.testkit import dicom as dicomdata
from training.data import DEFAULT_DATA

pytestmark = pytest.mark.model

# Two scans per class, and the syntaxes to read them in: lossless ones, with and without a
# window (without: the robust stretch), and one lossy (JPEG baseline re-compression).
SCANS = [f"{label}/Tr-{prefix}Tr_{i:04d}.jpg" for label, prefix in
         (("glioma", "gl"), ("meningioma", "me"), ("notumor", "no"), ("pituitary", "pi")) for i in (5, 6)]
CASES = [("explicit-le", True), ("jpeg2000-lossless", False), ("jpeg-ls-lossless", True), ("jpeg-baseline", True)]


@pytest.fixture(scope="module")
def analyzer():
    from workers.runtime import get_analyzer

    return get_analyzer()


@pytest.mark.parametrize(("key", "window"), CASES, ids=[f"{k}-{'window' if w else 'stretch'}" for k, w in CASES])
def test_dicom_from_a_jpeg_gets_the_jpegs_prediction(analyzer, key, window):
    for name in SCANS:
        jpeg = (DEFAULT_DATA / name).read_bytes()
        data = dicomdata.mr_slice_from_jpeg(jpeg, key=key, window=window)
        expected = analyzer.analyze(jpeg)
        (stored,) = dicom_slices(data, name=name, uid_key="test")
        for result in (analyzer.analyze(data), analyzer.analyze(stored.png)):
            assert result.label == expected.label, (name, key)
            for label in CLASS_NAMES:
                assert abs(result.probabilities[label] - expected.probabilities[label]) <= 0.02, (name, key, label)
            assert result.heatmap.shape == expected.heatmap.shape


def test_pydicom_mr_small_is_analysed(analyzer):
    result = analyzer.analyze(dicomdata.bundled("MR_small.dcm"))
    assert result.label in CLASS_NAMES
    assert result.heatmap.shape == (64, 64)
