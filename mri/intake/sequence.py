"""Which MRI sequence a slice is (T1, T1 post-contrast, T2, FLAIR, other, unknown), from its
DICOM attributes, and whether a model is validated on it. Pure: no Django, no TensorFlow.

Two independent kinds of evidence are read, and must agree:
- the physics: the timing parameters and the sequence type. A long inversion time with a long
  repetition time (ScanningSequence IR, TI ≥ 1500 ms, TR ≥ 5000 ms) nulls the fluid: FLAIR.
  A long TE with a long TR (TE ≥ 60 ms, TR ≥ 2000 ms) is T2 weighting; a short TE with a short
  TR (TE ≤ 30 ms, TR ≤ 1000 ms), or an inversion-prepared gradient echo with a T1-range TI
  (MPRAGE: 500-1500 ms, TE ≤ 10 ms), is T1 weighting; a short TE with a long TR is proton density
  (other); echo-planar diffusion and short-TI inversion (STIR) are other;
- the Series Description's words (FLAIR, T2, T1, MPRAGE, post/+C/Gd; DWI, ADC, SWI, … other).
A contrast agent named in ContrastBolusAgent (or "post"/"+C"/"Gd" in the description) turns T1
into T1 post-contrast; in the MR Image IOD the Contrast/Bolus module is required only when
contrast was used, so its absence means none. The de-identifier replaces the agent's value with
"ANONYMIZED" (empty or not), which says nothing about contrast: a T1 slice with only that is
unknown. Evidence that disagrees (the description says T2, the timings say T1) → unknown,
never a guess. No usable evidence → unknown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class MriSequence(StrEnum):
    T1 = "t1"
    T1_POST_CONTRAST = "t1c"
    T2 = "t2"
    FLAIR = "flair"
    OTHER = "other"
    UNKNOWN = "unknown"

    @property
    def display(self) -> str:
        return DISPLAY[self]


DISPLAY = {
    MriSequence.T1: "T1",
    MriSequence.T1_POST_CONTRAST: "T1 post-contrast",
    MriSequence.T2: "T2",
    MriSequence.FLAIR: "FLAIR",
    MriSequence.OTHER: "other sequence",
    MriSequence.UNKNOWN: "unknown sequence",
}


class SequenceSource(StrEnum):
    DICOM = "dicom"
    IMAGE = "image"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SequenceGuess:
    sequence: MriSequence
    source: SequenceSource
    reason: str


UNKNOWN = SequenceGuess(MriSequence.UNKNOWN, SequenceSource.UNKNOWN, "no sequence attributes")
# What a de-identifier writes in place of a value it removes (dicom-anonymizer; mri.intake.dicom.deidentify).
ANONYMIZED = {"ANONYMIZED", "ANONYMISED", "REMOVED"}
NO_AGENT = {"", "NONE", "NO", "N/A", "NA", "NIL", "0"}

# (pattern over the upper-cased description, sequence); the first that matches wins.
_DESCRIPTION_RULES: tuple[tuple[str, MriSequence], ...] = (
    (r"FLAIR|DARK[ _-]?FLUID|\bTIRM\b", MriSequence.FLAIR),
    (r"\b(DWI|DTI|ADC|TRACE|DIFFUSION|SWI|SWAN|PERF|PWI|DSC|ASL|STIR|LOC|LOCALI[ZS]ER|SCOUT|SURVEY|MRA|TOF)\b",
     MriSequence.OTHER),
    (r"\bPD\b|PROTON", MriSequence.OTHER),
    (r"T2", MriSequence.T2),
    (r"T1|MPRAGE|MP-RAGE|SPGR|FSPGR|BRAVO|\bTFE\b|\bVIBE\b", MriSequence.T1),
)  # fmt: skip
_POST = re.compile(r"POST|\+ ?C\b|\bC\+|\bGD\b|GAD|CONTRAST|\bCE\b|ENHANC")
_PRE = re.compile(r"\bPRE\b|PRE[ _-]?CONTRAST|NON[ _-]?CONTRAST|W/?O ?(C|CONTRAST)\b|\bNATIVE?\b")


def _text(attributes: Mapping[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    if value is None:
        return None
    if isinstance(value, list | tuple):
        value = "\\".join(str(v) for v in value)
    return str(value).strip().upper()


def _number(attributes: Mapping[str, Any], name: str) -> float | None:
    value = attributes.get(name)
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _words(value: str | None) -> set[str]:
    return set(re.split(r"[\\\s,]+", value)) - {""} if value else set()


def from_physics(attributes: Mapping[str, Any]) -> MriSequence | None:
    """The weighting the timing parameters and sequence type imply; None when they do not say."""
    scanning = _words(_text(attributes, "ScanningSequence"))
    variant = _words(_text(attributes, "SequenceVariant"))
    tr = _number(attributes, "RepetitionTime")
    te = _number(attributes, "EchoTime")
    ti = _number(attributes, "InversionTime")
    if "EP" in scanning and "GR" not in scanning and "IR" not in scanning and te and te >= 50:
        return MriSequence.OTHER  # spin-echo EPI with a long TE: diffusion
    # Inversion recovery, or a magnetisation-prepared (MP) sequence some vendors write as GR only.
    if "IR" in scanning or "MP" in variant:
        if ti is None:
            return None
        if ti >= 1500 and (tr is None or tr >= 5000):
            return MriSequence.FLAIR
        if ti <= 300:
            return MriSequence.OTHER  # STIR: fat nulled
        if 500 <= ti <= 1500 and te is not None and te <= 10:
            return MriSequence.T1  # MPRAGE-like
        return None
    if tr is None or te is None:
        return None
    if te >= 60 and tr >= 2000:
        return MriSequence.T2
    if te <= 30 and tr <= 1000:
        return MriSequence.T1
    if te <= 30 and tr >= 2000:
        return MriSequence.OTHER  # proton density
    return None


def from_description(description: str | None) -> MriSequence | None:
    if not description:
        return None
    for pattern, sequence in _DESCRIPTION_RULES:
        if re.search(pattern, description):
            return sequence
    return None


def _contrast(attributes: Mapping[str, Any], description: str | None) -> bool | None:
    """True: contrast given; False: none; None: cannot tell (or the evidence conflicts)."""
    said_post = bool(description and _POST.search(description))
    said_pre = bool(description and _PRE.search(description))
    if said_post and said_pre:
        return None
    agent = _text(attributes, "ContrastBolusAgent")
    # A named agent (or an explicit none) is evidence; the replaced value is not.
    tag = None if agent is None or agent in ANONYMIZED else agent not in NO_AGENT
    if said_post or said_pre:
        if tag is not None and tag != said_post:
            return None  # the description and the tag disagree
        return said_post
    if agent is None and "ContrastBolusAgent" not in attributes:
        return False  # the module is absent, and the standard requires it when contrast was used
    return tag


def infer_from_dicom(attributes: Mapping[str, Any]) -> SequenceGuess:
    """The sequence the attributes show (keyword → value, as pydicom names them)."""
    description = _text(attributes, "SeriesDescription")
    physics = from_physics(attributes)
    words = from_description(description)
    if physics is None and words is None:
        return UNKNOWN
    if physics is not None and words is not None and physics != words:
        return SequenceGuess(
            MriSequence.UNKNOWN,
            SequenceSource.UNKNOWN,
            f"conflict: timings say {physics.display}, the description says {words.display}",
        )
    sequence = physics or words
    assert sequence is not None
    reason = " and ".join(
        part for part, found in (("timings", physics), ("series description", words)) if found is not None
    )
    if sequence is MriSequence.T1:
        contrast = _contrast(attributes, description)
        if contrast is None:
            return SequenceGuess(
                MriSequence.UNKNOWN, SequenceSource.UNKNOWN, "T1 weighted, but whether contrast was given is unknown"
            )
        if contrast:
            return SequenceGuess(MriSequence.T1_POST_CONTRAST, SequenceSource.DICOM, f"{reason}; contrast agent")
    return SequenceGuess(sequence, SequenceSource.DICOM, reason)


ATTRIBUTES = (
    "ScanningSequence",
    "SequenceVariant",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "ContrastBolusAgent",
    "SeriesDescription",
)


def dataset_attributes(dataset: Any) -> dict[str, Any]:
    """The attributes `infer_from_dicom` reads, from a pydicom Dataset (present ones only)."""
    return {name: dataset.get(name) for name in ATTRIBUTES if name in dataset}


def is_validated(sequence: str, validated: list[str] | tuple[str, ...] | None) -> bool | None:
    """Is a result on `sequence` within what the model was validated on? None: cannot say (the
    sequence is unknown, or the model card lists no sequences)."""
    if validated is None or sequence in ("", MriSequence.UNKNOWN):
        return None
    return sequence in validated

