"""DICOM nodes (the PACS or scanners allowed to send us studies), what they sent (the original
identifiers, kept in the database only so results can go back into the same study: stored
files stay de-identified), and the outbox of results to send back.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from apps.accounts.clinics import ClinicManager

# PS3.5 6.2: AE is up to 16 characters of the default repertoire, no backslash or control
# characters; leading and trailing spaces are not significant.
ae_title_validator = RegexValidator(
    r"^[\x20-\x5b\x5d-\x7e]{1,16}$", "An AE title is 1 to 16 printable characters, without a backslash."
)


class DicomNode(models.Model):
    """A DICOM application entity of a clinic's imaging network. Its AE title identifies it
    on every association, so one AE title belongs to one clinic only (unique overall)."""

    clinic = models.ForeignKey("accounts.Clinic", on_delete=models.PROTECT, related_name="dicom_nodes")
    ae_title = models.CharField("AE title", max_length=16, unique=True, validators=[ae_title_validator])
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    send_results = models.BooleanField(default=False, help_text="Send SR, secondary captures and PDF back to it.")
    is_active = models.BooleanField(default=True)
    # The account the receiver acts as for this node (scans' uploader, audit actor): no
    # password, inactive, so nobody can sign in as it.
    service_user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="dicom_node", editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ClinicManager()

    class Meta:
        ordering = ["ae_title"]

    def __str__(self) -> str:
        return f"{self.ae_title} ({self.host}:{self.port})"


class DicomStudy(models.Model):
    """One study received (C-STORE or STOW-RS), one case. The identifiers are the ORIGINAL
    ones, for sending results back into the same study only."""

    clinic = models.ForeignKey("accounts.Clinic", on_delete=models.PROTECT, related_name="+")
    node = models.ForeignKey(DicomNode, on_delete=models.PROTECT, null=True, blank=True, related_name="studies")
    case = models.OneToOneField("cases.Case", on_delete=models.CASCADE, related_name="dicom_study")
    study_instance_uid = models.CharField(max_length=64)
    patient_id = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=200, blank=True)
    patient_birth_date = models.CharField(max_length=8, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)
    study_date = models.CharField(max_length=8, blank=True)
    study_time = models.CharField(max_length=16, blank=True)
    study_id = models.CharField(max_length=16, blank=True)
    accession_number = models.CharField(max_length=16, blank=True)
    referring_physician_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ClinicManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["clinic", "study_instance_uid"], name="dicomstudy_uid_unique_per_clinic")
        ]

    def __str__(self) -> str:
        return f"Study {self.study_instance_uid} (case {self.case_id})"


class DicomInstance(models.Model):
    """One received frame (a multi-frame instance gives one row per frame, made when it
    arrives, so a re-sent SOP Instance UID is recognised at once) and, once the worker has
    unpacked its `upload`, the scan it became (linked by frame order, apps/dicomnet/signals.py).
    Until then, or when the upload failed, `scan` is empty: results cover linked frames only."""

    study = models.ForeignKey(DicomStudy, on_delete=models.CASCADE, related_name="instances")
    upload = models.ForeignKey(
        "scans.StudyUpload", on_delete=models.CASCADE, null=True, blank=True, related_name="dicom_instances"
    )
    scan = models.OneToOneField(
        "scans.Scan", on_delete=models.CASCADE, null=True, blank=True, related_name="dicom_source"
    )
    sop_instance_uid = models.CharField(max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    series_instance_uid = models.CharField(max_length=64)
    frame_number = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True)

    objects = ClinicManager()

    class Meta:
        ordering = ["study", "series_instance_uid", "scan__slice_order", "frame_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "sop_instance_uid", "frame_number"], name="dicominstance_unique_frame"
            )
        ]

    def __str__(self) -> str:
        return f"{self.sop_instance_uid} frame {self.frame_number}"


class OutboxKind(models.TextChoices):
    SR = "sr", "Structured report"
    SC = "sc", "Secondary captures"
    PDF = "pdf", "Encapsulated PDF report"


class OutboxState(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    SENDING = "sending", "Sending"
    RETRYING = "retrying", "PACS unreachable, retrying"
    SENT = "sent", "Sent"


class OutboxItem(models.Model):
    """Results to send to a node, one row per object set. Rows are only ever added and moved
    forward, so nothing is lost; each (study, kind, verified) exists once, and its UIDs are
    fixed when the row is made, so a resend after a crash replaces the same instances in the
    PACS instead of duplicating them."""

    study = models.ForeignKey(DicomStudy, on_delete=models.CASCADE, related_name="outbox")
    node = models.ForeignKey(DicomNode, on_delete=models.PROTECT, related_name="outbox")
    kind = models.CharField(max_length=8, choices=OutboxKind.choices)
    verified = models.BooleanField(default=False)  # signed case: SR re-sent as verified, the PDF
    series_instance_uid = models.CharField(max_length=64)
    sop_instance_uid_root = models.CharField(max_length=58)  # + ".<n>" per object
    state = models.CharField(max_length=10, choices=OutboxState.choices, default=OutboxState.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    objects_sent = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = ClinicManager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "kind", "verified"], name="outbox_once_per_study_kind")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for case {self.study.case_id}: {self.state}"
