"""Forms for the server-rendered pages. They only shape and check input; the services in
apps/*/services.py decide and write, and their ValidationErrors come back onto the form."""
from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from apps.accounts.models import User
from apps.cases.models import CaseStatus
from apps.cases.worklist import CONFIDENCE_CHOICES
from apps.patients.models import Patient, Sex
from apps.patients.selectors import patient_list
from apps.scans.labels import MODEL_LABEL_CHOICES, READING_CHOICES
from mri.intake.limits import MAX_UPLOAD_BYTES


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Put a service's ValidationError on the form: per field where it names one we show."""
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error)


class ClinicLoginForm(AuthenticationForm):
    """The login form, saying so when the password is right but the account is deactivated
    (Django's backend refuses inactive users before the form's own "inactive" check runs, so
    they were told their password was wrong). A wrong password still gets the usual message."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "inactive": "This account has been deactivated. Ask your clinic admin to reactivate it.",
    }

    def clean(self) -> dict[str, Any]:
        try:
            return super().clean()
        except ValidationError:
            if self._deactivated_with_right_password():
                raise ValidationError(self.error_messages["inactive"], code="inactive") from None
            raise

    def _deactivated_with_right_password(self) -> bool:
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if not username or not password:
            return False
        user = User.objects.filter(username=username, is_active=False).first()
        return user is not None and user.check_password(password)


class PatientForm(forms.Form):
    mrn = forms.CharField(label="MRN", max_length=64, help_text="Medical record number.")
    name = forms.CharField(max_length=200)
    date_of_birth = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Date of birth"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The date picker offers no future day (patients.services refuses one anyway).
        self.fields["date_of_birth"].widget.attrs["max"] = timezone.localdate().isoformat()
    sex = forms.ChoiceField(choices=Sex.choices, required=False)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files from one <input multiple>; content checks are the scan service's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        accept = "image/jpeg,image/png,.dcm,.dicom,application/dicom,.zip,application/zip"
        # The size limits, so the page can leave out a file that is too large before sending
        # (static/js/app.js): the server would refuse the whole request (413) and the form.
        limits = {"data-max-bytes": MAX_UPLOAD_BYTES, "data-max-zip-bytes": settings.DICOM_ZIP_MAX_BYTES}
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": accept, "multiple": True, **limits}))
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        files = data if isinstance(data, (list, tuple)) else [data]
        files = [f for f in files if f]
        if self.required and not files:
            raise ValidationError("Choose at least one scan to upload.")
        return [super(MultipleFileField, self).clean(f, initial) for f in files]


_LIMIT_MB = MAX_UPLOAD_BYTES // 2**20


class ScanUploadForm(forms.Form):
    files = MultipleFileField(
        label="Scans", help_text=f"JPEG or PNG slices, DICOM files (.dcm, multi-frame too) or a .zip of a DICOM study; "
        f"up to {_LIMIT_MB} MB per file.",
    )


class SignedCaseUploadForm(ScanUploadForm):
    """New scans for a signed case: they come with an addendum saying why."""

    addendum = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="This case is signed: say why scans are added (kept with the case).",
    )


class CaseCreateForm(ScanUploadForm):
    # Chosen by typing (templates/web/_patient_picker.html asks GET /patients/search/): a
    # dropdown of every patient is unusable at thousands. The id travels in a hidden input.
    patient = forms.ModelChoiceField(
        queryset=Patient.objects.none(),
        widget=forms.HiddenInput,
        error_messages={"required": "Choose a patient: type part of the name or MRN and pick from the list."},
    )
    title = forms.CharField(max_length=200, required=False)
    clinical_notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    field_order = ["patient", "title", "clinical_notes", "files"]

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only the user's clinic's patients can be chosen (or even named in a forged POST).
        self.fields["patient"].queryset = patient_list(user=user)
        self.user = user

    @property
    def chosen_patient(self) -> Patient | None:
        """The patient the form holds (posted or from ?patient=), shown beside the search."""
        value = self["patient"].value()
        if not value:
            return None
        try:
            return self.fields["patient"].queryset.filter(pk=int(value)).first()
        except (TypeError, ValueError):
            return None


class ReviewForm(forms.Form):
    """One radio group: agree with the model, or the reading that replaces its label (the
    scan card leaves the model's own label out of the corrections)."""

    AGREE = "agree"

    reading = forms.ChoiceField(choices=[(AGREE, "Agree with the model"), *READING_CHOICES], widget=forms.RadioSelect)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    addendum = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def review_arguments(self) -> dict[str, Any]:
        """The cleaned form as scan_review's keyword arguments."""
        reading = self.cleaned_data["reading"]
        agrees = reading == self.AGREE
        return {
            "agrees": agrees,
            "label": "" if agrees else reading,
            "note": self.cleaned_data["note"],
            "addendum": self.cleaned_data["addendum"],
        }


class SignForm(forms.Form):
    conclusion = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), strip=True)


class AddendumForm(forms.Form):
    text = forms.CharField(label="Addendum", widget=forms.Textarea(attrs={"rows": 3}), strip=True)


class HistoryFilterForm(forms.Form):
    """Renders the history filters; parsing for the query is CaseFilters.from_query's job."""

    q = forms.CharField(
        required=False, label="Patient name or MRN", widget=forms.TextInput(attrs={"type": "search"})
    )
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    label = forms.ChoiceField(required=False, choices=[("", "Any label"), *MODEL_LABEL_CHOICES])
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *CaseStatus.choices])


class WorklistFilterForm(HistoryFilterForm):
    """Renders the worklist filters; cases.worklist.WorklistFilters parses them."""

    status = None  # every case on the worklist is analysed
    confidence = forms.ChoiceField(required=False, choices=CONFIDENCE_CHOICES)
    mine = forms.BooleanField(required=False, label="Only cases I started")
