"""De-identification of DICOM on ingest: DICOM PS3.15 Annex E, Basic Application Level
Confidentiality Profile (no options retained).

The attribute table and the per-VR actions (D replace, Z empty, X remove, U replace UID and
the combined ones) are dicom-anonymizer's, a transcription of Table E.1-1 (its 2026c
edition). On top of it, here:
- the table is applied at every nesting level, not only at the top of the dataset, so a name
  inside a sequence item goes too;
- UIDs are replaced by a keyed hash (`2.25.<sha-256 of key + UID>`), not at random, so every
  file of a study gets the same new Study/Series/Frame of Reference UIDs, whichever web
  process and whichever upload it came in;
- private tags are removed (the profile's default), overlays and curves (60xx/50xx) go with
  the table's repeating-group rules;
- Patient Identity Removed = YES, De-identification Method and its code sequence (DCM 113100)
  are set.
What the case needs (patient, study date) is in our database, never read back from the file.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

DEIDENTIFICATION_METHOD = "PS3.15 Annex E Basic Application Confidentiality Profile"  # LO: 64 chars max
_TABLE = "dicomfields_2026c"


@cache
def _actions() -> tuple[dict[tuple[int, int], Callable], list[tuple[tuple[int, ...], Callable]]]:
    from dicomanonymizer.simpledicomanonymizer import initialize_actions

    single: dict[tuple[int, int], Callable] = {}
    ranges: list[tuple[tuple[int, ...], Callable]] = []
    for tag, action in initialize_actions(_TABLE).items():
        if len(tag) == 2:
            single[(tag[0], tag[1])] = action
        else:  # (group, element, group mask, element mask): repeating groups (50xx, 60xx)
            ranges.append((tag, action))
    return single, ranges


def replacement_uid(uid: str, *, key: str) -> str:
    """The same UID in, the same new UID out, for everyone holding `key`; not reversible."""
    digest = hashlib.sha256(f"{key}\x00{uid}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _action_name(action: Callable) -> str:
    return getattr(action, "__name__", "")


def _apply(dataset: Dataset, tag: tuple[int, int], action: Callable, key: str) -> None:
    element = dataset.get(tag)
    if element is None:
        return
    name = _action_name(action)
    if element.VR == "UI" and name not in ("empty", "delete", "delete_or_empty"):
        values = element.value if element.VM > 1 else [element.value]
        new = [replacement_uid(str(v), key=key) for v in values if str(v)]
        element.value = new if element.VM > 1 else (new[0] if new else "")
        return
    action(dataset, tag)


def _matches(tag: Any, pattern: tuple[int, ...]) -> bool:
    group, element, group_mask, element_mask = pattern
    return tag.group & group_mask == group & group_mask and tag.element & element_mask == element & element_mask


def _deidentify_level(dataset: Dataset, key: str) -> None:
    single, ranges = _actions()
    for element in list(dataset):
        tag = element.tag
        action = single.get((tag.group, tag.element))
        if action is None:
            action = next((a for pattern, a in ranges if _matches(tag, pattern)), None)
        if action is not None:
            _apply(dataset, (tag.group, tag.element), action, key)
        current = dataset.get(tag)
        if current is not None and current.VR == "SQ" and isinstance(current.value, Sequence):
            for item in current.value:
                _deidentify_level(item, key)


def dicom_deidentify(dataset: Dataset, *, key: str) -> Dataset:
    """De-identify `dataset` in place (and return it). `key` keys the UID replacement."""
    dataset.remove_private_tags()  # recursive in pydicom
    _deidentify_level(dataset, key)
    meta = getattr(dataset, "file_meta", None)
    if meta is not None:
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                        "ReceivingApplicationEntityTitle", "PrivateInformationCreatorUID", "PrivateInformation"):
            if keyword in meta:
                delattr(meta, keyword)
        if "SOPInstanceUID" in dataset:
            meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = DEIDENTIFICATION_METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    dataset.DeidentificationMethodCodeSequence = Sequence([code])
    return dataset
