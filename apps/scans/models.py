"""Scans, the model's prediction for each, and radiologists' reviews of it (all kept).

A scan's state machine is stored so the pages, the API and the worker agree on what happened:
queued → processing → done | failed (with `error`) | rejected (the out-of-distribution gate
found it is not a brain MRI slice: no prediction, `error` says why) | held (text burnt into the
image: waits for a person, who releases it to queued or discards it as failed), with the time of
each step. Files get
names the application makes up; the uploaded name is kept for display only.
"""

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from apps.accounts.clinics import ClinicManager
from mri.intake.sequence import DISPLAY as SEQUENCE_DISPLAY
from mri.intake.sequence import MriSequence, SequenceSource
from mri.results import opening_label
from mri.vocabulary import LOW_CONFIDENCE, NO_TUMOUR

from .labels import MODEL_LABEL_CHOICES, READING_CHOICES, Label


def _scan_path(instance: "Scan", filename: str) -> str:
    # A DICOM scan's `image` is the 16-bit PNG rendering of its decoded frame.
    ext = "png" if instance.format in ("PNG", "DICOM") else "jpg"
    return f"scans/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.{ext}"


def _dicom_path(instance: "Scan", filename: str) -> str:
    return f"dicom/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.dcm"


def _prediction_path(instance: "Prediction", filename: str) -> str:
    # `filename` is "heatmap.png" or "overlay.png", chosen by the service, never by a user.
    return f"predictions/{timezone.now():%Y/%m}/{uuid.uuid4().hex}-{filename}"


def _original_path(instance: "StudyUpload", filename: str) -> str:
    # The upload as it came (PHI inside): never served, deleted once a worker has unpacked it.
    return f"originals/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.bin"


class StudyStatus(models.TextChoices):
    RECEIVED = "received", "Received"  # originals stored, waiting for a worker
    UNPACKING = "unpacking", "Unpacking"  # a worker decodes, de-identifies and splits it
    UNPACKED = "unpacked", "Unpacked"  # its slices are scans: their analysis is the progress
    FAILED = "failed", "Failed"  # nothing of it was stored; `error` says why

    # Sets of statuses (assigned below the class: a value in the body would be a member).
    IN_FLIGHT: ClassVar[tuple[str, ...]]  # its job has not finished: scans may still appear


StudyStatus.IN_FLIGHT = (StudyStatus.RECEIVED, StudyStatus.UNPACKING)


class StudyUpload(models.Model):
    """A DICOM upload (files, zipped series) as ONE unit of work (issues 15 and 19): the web
    request checks its headers, stores the original bytes (`sources`) and answers; a worker job
    (workers/tasks.py `ingest_study`) validates, decodes, de-identifies and splits it into scans
    in one transaction, then the scans are analysed. Progress: analysed slices of `slices_total`."""

    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="study_uploads")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # [{"name": shown name, "path": storage name, "kind": "dicom" | "zip"}]; paths emptied once deleted.
    sources = models.JSONField(default=list)
    slices_expected = models.PositiveIntegerField(default=0)  # from the headers, at upload
    slices_total = models.PositiveIntegerField(null=True, blank=True)  # made by the worker
    skipped = models.JSONField(default=list)  # [{"name", "reason"}], at upload and unpacking
    status = models.CharField(max_length=12, choices=StudyStatus.choices, default=StudyStatus.RECEIVED, db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)  # unpacked or failed

    objects = ClinicManager()

    class Meta:
        ordering = ["received_at", "id"]

    def __str__(self) -> str:
        return f"Study upload {self.pk} ({self.status})"


class ScanStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    # Not a brain MRI slice (mri/model/ood.py): finished, but no tumour label is stored or shown.
    REJECTED = "rejected", "Not a brain MRI"
    # Text burnt into the pixels (mri/intake/burnt_text.py), often a name: not analysed until a
    # clinic admin or radiologist releases it to analysis or discards it (apps/scans/holds.py).
    HELD = "held", "Held: text burnt into the image"

    # Sets of statuses, the one home of each rule (assigned below the class: a value in the
    # body would be a member).
    IN_FLIGHT: ClassVar[tuple[str, ...]]  # a worker owns it: no sign-off, removal or purge now
    PENDING: ClassVar[tuple[str, ...]]  # no answer yet: in flight, or held for a person
    ANSWERED: ClassVar[tuple[str, ...]]  # the model answered: a label, or "not a brain MRI"
    FINISHED: ClassVar[tuple[str, ...]]  # nothing more will happen to it


ScanStatus.IN_FLIGHT = (ScanStatus.QUEUED, ScanStatus.PROCESSING)
ScanStatus.PENDING = (*ScanStatus.IN_FLIGHT, ScanStatus.HELD)
ScanStatus.ANSWERED = (ScanStatus.DONE, ScanStatus.REJECTED)
ScanStatus.FINISHED = (ScanStatus.DONE, ScanStatus.FAILED, ScanStatus.REJECTED)


class LiveScanManager(ClinicManager):
    """Scans not removed: what every page, API, count and worker sees (the default manager,
    so `case.scans` and every `Scan.objects` query leave removed ones out)."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(removed_at__isnull=True)


class Scan(models.Model):
    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="scans")
    # PROTECT: users are deactivated, never deleted, so "who uploaded it" is never blanked.
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="scans_uploaded"
    )
    image = models.FileField(upload_to=_scan_path, max_length=255)
    original_filename = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8)  # "JPEG" | "PNG" | "DICOM", from the content

    # DICOM scans only (blank/None otherwise). `dicom` is the de-identified single-frame file
    # (the uploaded bytes are kept only until a worker has unpacked them: StudyUpload); the
    # rest orders a series' slices and checks the patient. `source_patient_id` is the file's
    # PatientID as uploaded, kept in the database only, to warn when it is not the MRN.
    dicom = models.FileField(upload_to=_dicom_path, max_length=255, blank=True)
    series_uid = models.CharField(max_length=64, blank=True)  # de-identified Series Instance UID
    slice_order = models.FloatField(null=True, blank=True)  # Instance Number, else position
    instance_number = models.IntegerField(null=True, blank=True)
    source_patient_id = models.CharField(max_length=64, blank=True)
    # The exam's date (StudyDate, else SeriesDate) and the series' description as the file
    # had them; de-identification keeps them (deidentify.py) so priors order by exam date.
    exam_date = models.DateField(null=True, blank=True, db_index=True)
    series_description = models.CharField(max_length=64, blank=True)
    # The DICOM upload this slice was unpacked from (None: a JPEG/PNG, or before studies).
    study_upload = models.ForeignKey(
        StudyUpload, on_delete=models.SET_NULL, null=True, blank=True, related_name="scans"
    )

    status = models.CharField(max_length=12, choices=ScanStatus.choices, default=ScanStatus.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    queued_at = models.DateTimeField(default=timezone.now)
    # Last time a message was published for it (None: the broker was down at upload).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The latest of the scan's reviews (ScanReview.scan keeps them all), kept by scan_review in
    # the same transaction, so pages and queries join one row instead of picking the latest.
    review = models.OneToOneField(
        "ScanReview", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    # How unlike the training scans this one is (mri/model/ood.py; higher = less like them). Set
    # when analysed, for done and rejected scans; null before, or for a model without a gate.
    ood_score = models.FloatField(null=True, blank=True)
    # The gate that judged that score (a gate can be refitted under one model version): the
    # threshold it held the score against and the sha256 of its statistics (the card's `ood`).
    ood_threshold = models.FloatField(null=True, blank=True)
    ood_gate = models.CharField(max_length=64, blank=True)
    # The MRI sequence the slice is (mri/intake/sequence.py) and how it is known: from the DICOM
    # attributes at upload, else unknown. A result is validated only on the sequences the model
    # card lists (Prediction.validated).
    sequence = models.CharField(
        max_length=8, choices=[(s.value, SEQUENCE_DISPLAY[s]) for s in MriSequence], default=MriSequence.UNKNOWN
    )
    sequence_source = models.CharField(
        max_length=8, choices=[(s.value, s.value) for s in SequenceSource], default=SequenceSource.UNKNOWN
    )
    # A person looked at the text burnt into this scan and released it: analysed without the check.
    burnt_text_released = models.BooleanField(default=False)
    # "host:pid" of the worker process that claimed it last (services.worker_identity): the sweep
    # revives at once a scan whose worker process on the sweep's own host is gone (`make run`).
    claimed_by = models.CharField(max_length=100, blank=True)
    # Removed by staff (a wrong upload: apps/scans/removal.py): hidden everywhere, kept with who
    # and why (the audit trail names it too); the files stay until the case is purged.
    removed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    removed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    removed_reason = models.CharField(max_length=500, blank=True)

    objects = LiveScanManager()
    all_objects = ClinicManager()  # removed ones too: the admin and the purge

    class Meta:
        base_manager_name = "all_objects"  # prediction.scan and review.scan still resolve
        ordering = ["queued_at", "id"]
        indexes = [models.Index(fields=["status", "queued_at"])]

    def __str__(self) -> str:
        return f"Scan {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in ScanStatus.FINISHED

    @property
    def is_held(self) -> bool:
        return self.status == ScanStatus.HELD

    @property
    def is_verified(self) -> bool:
        """A radiologist has read this scan in a signed case. Until then every page, API
        response and report calls the model's output unverified. (Scans added to a signed case
        by addendum stay unverified until they are reviewed.)"""
        return self.review_id is not None and self.case.signed_at is not None

    def get_image_url(self) -> str:
        return reverse("scans:image", args=[self.pk])

    def get_overlay_url(self) -> str:
        return reverse("scans:overlay", args=[self.pk])

    def get_heatmap_url(self) -> str:
        return reverse("scans:heatmap", args=[self.pk])

    def get_dicom_url(self) -> str | None:
        return reverse("scans:dicom", args=[self.pk]) if self.dicom else None

    @property
    def is_dicom(self) -> bool:
        return self.format == "DICOM"

    @property
    def patient_id_mismatch(self) -> bool:
        """The DICOM file named another Patient ID than the case's patient MRN."""
        if not self.source_patient_id:
            return False
        return self.source_patient_id.strip().casefold() != self.case.patient.mrn.strip().casefold()

    @property
    def tumour_probability(self) -> float | None:
        """1 − P(no tumour), for ranking a study's slices; None until analysed."""
        prediction = getattr(self, "prediction", None)
        if prediction is None:
            return None
        return 1.0 - float(prediction.probabilities.get(NO_TUMOUR, 0.0))


class Prediction(models.Model):
    scan = models.OneToOneField(Scan, on_delete=models.CASCADE, related_name="prediction")
    label = models.CharField(max_length=32, choices=MODEL_LABEL_CHOICES, db_index=True)
    probabilities = models.JSONField()  # label → calibrated probability, sums to 1
    model_version = models.CharField(max_length=100)
    heatmap = models.FileField(upload_to=_prediction_path, max_length=255)  # 8-bit gray PNG
    overlay = models.FileField(upload_to=_prediction_path, max_length=255)  # colour PNG
    timings_ms = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    # Is the scan's sequence one the model card lists as validated? False: a known sequence the
    # model was not validated on (never shown as a confident result; the worklist ranks it with
    # low-confidence tumours). None: cannot say (sequence unknown, or a card without the list).
    validated = models.BooleanField(null=True, blank=True)

    objects = ClinicManager()

    def __str__(self) -> str:
        return f"{self.label} for scan {self.scan_id}"

    @property
    def not_validated(self) -> bool:
        return self.validated is False

    @property
    def sequence_name(self) -> str:
        return self.scan.get_sequence_display()

    LOW_CONFIDENCE = LOW_CONFIDENCE

    @property
    def label_name(self) -> str:
        return Label.name_of(self.label)

    @property
    def confidence(self) -> float:
        return float(self.probabilities.get(self.label, 0.0))

    @property
    def is_low_confidence(self) -> bool:
        """The model is unsure: pages flag the result instead of asserting the label."""
        return self.confidence < LOW_CONFIDENCE

    def sorted_probabilities(self) -> list[tuple[str, float]]:
        """(label, probability) pairs, most likely first, for bars on the page."""
        return sorted(((k, float(v)) for k, v in self.probabilities.items()), key=lambda kv: -kv[1])

    @property
    def heatmap_label(self) -> str:
        """The class whose heatmap the card opens on (mri.results.opening_label)."""
        return opening_label(self.label, self.probabilities, self.not_validated)


class ScanReview(models.Model):
    """A radiologist's reading of an analysed scan: agrees with the model, or the label the scan
    really shows, with a note. Reviews are never edited or deleted: a new review adds a row and
    `Scan.review` points at the latest one, which is the one that counts."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    agrees = models.BooleanField()
    # The reading (labels.READING_CHOICES). Blank only on reviews recorded before readings
    # existed that disagreed without saying what the scan shows.
    label = models.CharField(max_length=32, choices=READING_CHOICES, blank=True)
    note = models.TextField(blank=True)
    reviewed_at = models.DateTimeField(default=timezone.now)
    # Set when the review was recorded after the case was signed (an addendum explains it).
    addendum = models.ForeignKey(
        "cases.CaseAddendum", on_delete=models.PROTECT, null=True, blank=True, related_name="reviews"
    )

    objects = ClinicManager()

    class Meta:
        ordering = ["reviewed_at", "id"]
        indexes = [models.Index(fields=["scan", "reviewed_at"])]

    def __str__(self) -> str:
        return f"{'Agrees' if self.agrees else 'Disagrees'} on scan {self.scan_id}"

    @property
    def label_name(self) -> str:
        return Label.name_of(self.label) if self.label else "not given"


class ClassHeatmap(models.Model):
    """The heatmap for one class of an analysed scan, computed on demand by a worker and kept
    (the predicted class's map is the prediction's own `heatmap`). A row without `image` is a
    computation asked for and not finished yet; `error` says why one could not be made."""

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="class_heatmaps")
    label = models.CharField(max_length=32, choices=MODEL_LABEL_CHOICES)
    image = models.FileField(upload_to=_prediction_path, max_length=255, blank=True)  # 8-bit gray PNG
    model_version = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ClinicManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prediction", "label"], name="one_heatmap_per_class")]

    def __str__(self) -> str:
        return f"{self.label} heatmap for scan {self.prediction.scan_id}"

    @property
    def is_ready(self) -> bool:
        return bool(self.image and self.image.name)
