"""Sequence inference from DICOM attributes: each rule, and conflicting or missing tags → unknown."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from mri.intake.dicom.deidentify import dicom_deidentify
from mri.intake.sequence import MriSequence, SequenceSource, dataset_attributes, infer_from_dicom, is_validated

# Typical 1.5/3 T brain protocols (timings in ms).
SPIN_ECHO_T1 = {"ScanningSequence": "SE", "SequenceVariant": "SK", "RepetitionTime": 500, "EchoTime": 12}
TURBO_SPIN_ECHO_T2 = {"ScanningSequence": "SE", "SequenceVariant": "SK", "RepetitionTime": 4000, "EchoTime": 100}
FLAIR = {"ScanningSequence": ["SE", "IR"], "RepetitionTime": 9000, "EchoTime": 120, "InversionTime": 2500}
MPRAGE = {"ScanningSequence": ["GR", "IR"], "SequenceVariant": ["SK", "SP", "MP"], "RepetitionTime": 2300,
          "EchoTime": 2.3, "InversionTime": 900}  # fmt: skip


def guess(attributes: dict) -> tuple[MriSequence, SequenceSource]:
    found = infer_from_dicom(attributes)
    return found.sequence, found.source


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        (SPIN_ECHO_T1, MriSequence.T1),
        (TURBO_SPIN_ECHO_T2, MriSequence.T2),
        (FLAIR, MriSequence.FLAIR),
        (MPRAGE, MriSequence.T1),
        # magnetisation-prepared gradient echo written without IR in ScanningSequence
        ({**MPRAGE, "ScanningSequence": "GR"}, MriSequence.T1),
        # STIR: short inversion time nulls fat, not fluid
        ({**FLAIR, "InversionTime": 150, "RepetitionTime": 4000}, MriSequence.OTHER),
        # proton density: long TR, short TE
        ({"ScanningSequence": "SE", "RepetitionTime": 3000, "EchoTime": 15}, MriSequence.OTHER),
        # spin-echo EPI with a long TE: diffusion
        (
            {"ScanningSequence": "EP", "SequenceVariant": "SK", "RepetitionTime": 6000, "EchoTime": 80},
            MriSequence.OTHER,
        ),
    ],
)
def test_physics_rules(attributes: dict, expected: MriSequence) -> None:
    assert guess(attributes) == (expected, SequenceSource.DICOM)


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("AX FLAIR", MriSequence.FLAIR),
        ("t2_tirm_tra_dark-fluid", MriSequence.FLAIR),
        ("AX T2 FSE", MriSequence.T2),
        ("AX T1 SE", MriSequence.T1),
        ("sag MPRAGE", MriSequence.T1),
        ("AX T1 POST GAD", MriSequence.T1_POST_CONTRAST),
        ("T1+C axial", MriSequence.T1_POST_CONTRAST),
        ("DWI b1000", MriSequence.OTHER),
        ("ADC map", MriSequence.OTHER),
        ("3-plane localizer", MriSequence.OTHER),
    ],
)
def test_description_rules(description: str, expected: MriSequence) -> None:
    assert guess({"SeriesDescription": description}) == (expected, SequenceSource.DICOM)


def test_a_named_contrast_agent_makes_t1_post_contrast() -> None:
    assert guess({**SPIN_ECHO_T1, "ContrastBolusAgent": "Gadavist 7 ml"})[0] is MriSequence.T1_POST_CONTRAST
    assert guess({**MPRAGE, "ContrastBolusAgent": "GADOBUTROL"})[0] is MriSequence.T1_POST_CONTRAST


def test_an_empty_or_none_agent_is_no_contrast() -> None:
    assert guess({**SPIN_ECHO_T1, "ContrastBolusAgent": ""})[0] is MriSequence.T1
    assert guess({**SPIN_ECHO_T1, "ContrastBolusAgent": "NONE"})[0] is MriSequence.T1


def test_a_contrast_agent_does_not_change_t2_or_flair() -> None:
    assert guess({**TURBO_SPIN_ECHO_T2, "ContrastBolusAgent": "Gadavist"})[0] is MriSequence.T2
    assert guess({**FLAIR, "ContrastBolusAgent": "Gadavist"})[0] is MriSequence.FLAIR


def test_timings_and_description_that_agree() -> None:
    found = infer_from_dicom({**TURBO_SPIN_ECHO_T2, "SeriesDescription": "AX T2"})
    assert found.sequence is MriSequence.T2
    assert "timings" in found.reason
    assert "series description" in found.reason


@pytest.mark.parametrize(
    "attributes",
    [
        {**TURBO_SPIN_ECHO_T2, "SeriesDescription": "AX T1 SE"},  # timings T2, words T1
        {**SPIN_ECHO_T1, "SeriesDescription": "AX FLAIR"},
        {**FLAIR, "SeriesDescription": "AX T2 FSE"},
        {**SPIN_ECHO_T1, "SeriesDescription": "T1 POST", "ContrastBolusAgent": "NONE"},  # post vs no agent
        {**SPIN_ECHO_T1, "SeriesDescription": "T1 PRE", "ContrastBolusAgent": "Gadavist"},  # pre vs an agent
        {"SeriesDescription": "T1 pre and post contrast"},
    ],
)
def test_conflicting_evidence_is_unknown(attributes: dict) -> None:
    assert guess(attributes) == (MriSequence.UNKNOWN, SequenceSource.UNKNOWN)


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"RepetitionTime": 500},  # no echo time
        {"EchoTime": 100},
        {"ScanningSequence": "SE", "RepetitionTime": "", "EchoTime": None},
        {"ScanningSequence": ["SE", "IR"], "RepetitionTime": 9000, "EchoTime": 120},  # IR without TI
        {"ScanningSequence": "SE", "RepetitionTime": 1500, "EchoTime": 45},  # intermediate weighting
        {"SeriesDescription": "Series 4"},
    ],
)
def test_missing_or_uninformative_tags_are_unknown(attributes: dict) -> None:
    assert guess(attributes) == (MriSequence.UNKNOWN, SequenceSource.UNKNOWN)


def test_the_agent_survives_deidentification_unless_it_names_the_patient() -> None:
    """The allow-list keeps the contrast agent (pre or post contrast stays known); an agent that
    names the patient is replaced by ANONYMIZED: a T1 slice whose contrast cannot be told then
    says unknown, never "no contrast"."""
    expected = {"": MriSequence.T1, "Gadavist": MriSequence.T1_POST_CONTRAST, "DOE^JANE": MriSequence.UNKNOWN}
    for agent, sequence in expected.items():
        dataset = Dataset()
        for name, value in {**SPIN_ECHO_T1, "ContrastBolusAgent": agent, "PatientName": "DOE^JANE"}.items():
            setattr(dataset, name, value)
        found = infer_from_dicom(dataset_attributes(dicom_deidentify(dataset, key="k") or dataset))
        assert found.sequence is sequence, agent
        assert "DOE" not in str(dicom_deidentify(dataset, key="k") or dataset)


def test_a_deidentified_t2_keeps_its_sequence() -> None:
    dataset = Dataset()
    for name, value in {**TURBO_SPIN_ECHO_T2, "SeriesDescription": "AX T2"}.items():
        setattr(dataset, name, value)
    dicom_deidentify(dataset, key="k")
    assert guess(dataset_attributes(dataset)) == (MriSequence.T2, SequenceSource.DICOM)


def test_validated_against_the_model_card_list() -> None:
    validated = ["t1c"]
    assert is_validated("t1c", validated) is True
    assert is_validated("t2", validated) is False
    assert is_validated("other", validated) is False
    assert is_validated("unknown", validated) is None
    assert is_validated("t2", None) is None


def test_pydicoms_real_mr_small_is_t2_from_its_timings() -> None:
    """A real scanner's file (pydicom's bundled MR_small: SE, TR 4000 ms, TE 240 ms)."""
    import io

    import pydicom

    from tests.testkit.dicom import bundled

    dataset = pydicom.dcmread(io.BytesIO(bundled("MR_small.dcm")), stop_before_pixels=True)
    found = infer_from_dicom(dataset_attributes(dataset))
    assert (found.sequence, found.source, found.reason) == (MriSequence.T2, SequenceSource.DICOM, "timings")
