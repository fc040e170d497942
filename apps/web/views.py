"""Server-rendered pages. Thin on purpose: read through selectors, write through services,
render. Every read is clinic-scoped by the selector, so another clinic's ids are a 404."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.audit.models import AuditAction
from apps.audit.reads import audit_denied, audit_list_read, audit_read, covered_by_page_view
from apps.audit.services import audit_record
from apps.cases.models import Case
from apps.cases.selectors import (
    CaseFilters,
    case_get,
    case_history,
    case_reading_summary,
    case_recent,
    case_timeline,
)
from apps.cases.services import case_addendum_add, case_create, case_move, case_sign
from apps.cases.worklist import (
    Priority,
    WorklistFilters,
    case_worklist_counts,
    case_worklist_page,
)
from apps.patients.selectors import patient_get, patient_list
from apps.patients.services import patient_create, patient_update
from apps.scans.agreement import agreement_allowed, agreement_by_version, agreement_model_versions
from apps.scans.batch import BatchOutcome, scans_upload_keeping_good
from apps.scans.holds import scan_hold_discard, scan_hold_release
from apps.scans.labels import MODEL_LABELS, READING_LABELS
from apps.scans.models import StudyStatus
from apps.scans.removal import scan_remove
from apps.scans.selectors import case_study_summary, scan_get, scan_list_for_case, scan_queue_stats
from apps.scans.services import UploadOutcome, scan_review
from apps.scans.studies import study_progress_for_case

from .charts import agreement_chart_svg
from .forms import (
    AddendumForm,
    CaseCreateForm,
    HistoryFilterForm,
    PatientForm,
    ReviewForm,
    ScanUploadForm,
    SignedCaseUploadForm,
    SignForm,
    WorklistFilterForm,
    add_service_errors,
)

PATIENTS_PER_PAGE = 50
CASES_PER_PAGE = 25


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness for the container health check: the process answers and reaches its database."""
    connection.ensure_connection()
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page links: send them to the icon."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    recent = case_recent(user=request.user, limit=10)
    audit_list_read(request, "case", [case.pk for case in recent], what="dashboard")
    return render(
        request,
        "web/dashboard.html",
        {
            "recent_cases": recent,
            "queue": scan_queue_stats(user=request.user),
            "worklist": case_worklist_counts(user=request.user),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def patients(request: HttpRequest) -> HttpResponse:
    form = PatientForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            patient = patient_create(created_by=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Patient {patient.name} ({patient.mrn}) added.")
            return redirect("patients")
    search = request.GET.get("q", "")
    page = Paginator(patient_list(user=request.user, search=search), PATIENTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    status = 400 if request.method == "POST" else 200
    audit_list_read(request, "patient", [patient.pk for patient in page], what="list")
    return render(request, "web/patients.html", {"form": form, "page": page, "search": search}, status=status)


PATIENT_SEARCH_LIMIT = 20


@login_required
@require_GET
def patient_search(request: HttpRequest) -> HttpResponse:
    """The patient picker's suggestions: the clinic's patients matching the typed name or MRN."""
    search = request.GET.get("q", "").strip()
    patients = list(patient_list(user=request.user, search=search)[:PATIENT_SEARCH_LIMIT]) if search else []
    if search:  # like every list: the ids shown (the search term stays out of the trail)
        audit_list_read(request, "patient", [patient.pk for patient in patients], what="search")
    return render(request, "web/_patient_options.html", {"patients": patients, "search": search})


@login_required
@require_http_methods(["GET", "POST"])
def patient_edit(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Correct a patient's details (a mistyped name, MRN or birth date)."""
    patient = patient_get(user=request.user, patient_id=patient_id)
    initial = {"mrn": patient.mrn, "name": patient.name, "date_of_birth": patient.date_of_birth, "sex": patient.sex}
    form = PatientForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            patient_update(patient=patient, updated_by=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Patient {patient.name} ({patient.mrn}) saved.")
            return redirect("patients")
    if request.method == "GET":
        audit_record(actor=request.user, action=AuditAction.VIEW, obj=patient, request=request, detail="edit form")
    status = 400 if request.method == "POST" else 200
    return render(request, "web/patient_edit.html", {"form": form, "patient": patient}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def case_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = CaseCreateForm(request.POST, request.FILES, user=request.user)
        if form.is_valid():
            data = form.cleaned_data
            try:
                # One transaction: a rejected file leaves no empty case behind.
                with transaction.atomic():
                    case = case_create(
                        created_by=request.user,
                        patient=data["patient"],
                        title=data["title"],
                        clinical_notes=data["clinical_notes"],
                    )
                    outcome = scans_upload_keeping_good(case=case, uploaded_by=request.user, uploads=data["files"])
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Case opened. " + _uploaded_message(outcome, "added"))
                _report_skipped(request, outcome)
                _report_refused(request, outcome)
                return redirect("case_detail", case_id=case.pk)
        return render(request, "web/case_new.html", {"form": form}, status=400)
    form = CaseCreateForm(user=request.user, initial={"patient": request.GET.get("patient")})
    return render(request, "web/case_new.html", {"form": form})


def _upload_form_class(case: Case) -> type[ScanUploadForm]:
    return SignedCaseUploadForm if case.is_signed else ScanUploadForm


def _uploaded_message(outcome: UploadOutcome | BatchOutcome, verb: str) -> str:
    """What the upload did: JPEG/PNG scans are queued; a DICOM study is unpacked by a worker."""
    parts = []
    if outcome.scans or not outcome.studies:
        parts.append(f"{len(outcome.scans)} scan(s) {verb}; analysis has been queued.")
    for study in outcome.studies:
        parts.append(
            f"DICOM study of {study.slices_expected} slice(s) received; it is being unpacked and de-identified, "
            "then analysed (progress below)."
        )
    return " ".join(parts)


def _report_skipped(request: HttpRequest, outcome: UploadOutcome | BatchOutcome) -> None:
    """Files of a zipped study that were not stored, each with its reason."""
    if outcome.skipped:
        listed = "; ".join(f"{item.name} ({item.reason})" for item in outcome.skipped[:10])
        more = f" and {len(outcome.skipped) - 10} more" if len(outcome.skipped) > 10 else ""
        messages.warning(request, f"Skipped {len(outcome.skipped)} file(s): {listed}{more}.")


def _report_refused(request: HttpRequest, outcome: BatchOutcome) -> None:
    """The files of a batch that were not stored while the others were, each with its reason."""
    if outcome.refused:
        listed = " ".join(outcome.refused)
        messages.error(request, f"Not stored ({len(outcome.refused)}): {listed} Upload those again once fixed.")


def _move_targets(request: HttpRequest, study: object) -> list:
    """Patients of the clinic whose MRN is the Patient ID the study's files name: where a
    study uploaded under the wrong patient can be moved."""
    ids = getattr(study, "mismatched_patient_ids", [])
    if not ids:
        return []
    named = Q()
    for patient_id in ids:
        named |= Q(mrn__iexact=patient_id)
    return list(patient_list(user=request.user).filter(named)[:5])


def _case_context(
    request: HttpRequest,
    case_id: int,
    upload_form: ScanUploadForm | None = None,
    sign_form: SignForm | None = None,
) -> dict:
    case = case_get(user=request.user, case_id=case_id)
    scans = list(scan_list_for_case(case=case))
    studies = study_progress_for_case(case=case)
    # Every rendering of the case page is one read, naming the scans it showed; the files and
    # fragments the page then loads are part of it (apps/audit/reads.py).
    audit_read(request, case, shown="scans", ids=[scan.pk for scan in scans])
    study = case_study_summary(case=case, scans=scans)
    return {
        "case": case,
        "scans": scans,
        "studies": studies,
        "studies_unpacking": _unpacking(studies),
        "study": study,
        "move_targets": _move_targets(request, study),
        "upload_form": upload_form or _upload_form_class(case)(),
        "review_form": ReviewForm(auto_id=False),  # one per scan card: no duplicate ids
        "sign_form": sign_form or SignForm(initial={"conclusion": case_reading_summary(case=case)}),
        "addendum_form": AddendumForm(),
    }


@login_required
@require_GET
def case_detail(request: HttpRequest, case_id: int) -> HttpResponse:
    return render(request, "web/case_detail.html", _case_context(request, case_id))


@login_required
@require_POST
def case_add_scans(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(user=request.user, case_id=case_id)
    form = _upload_form_class(case)(request.POST, request.FILES)
    if form.is_valid():
        try:
            outcome = scans_upload_keeping_good(
                case=case,
                uploaded_by=request.user,
                uploads=form.cleaned_data["files"],
                addendum=form.cleaned_data.get("addendum", ""),
            )
        except PermissionDenied as exc:  # staff on a signed case: the reason, on the page
            form.add_error(None, str(exc))
            return render(request, "web/case_detail.html", _case_context(request, case_id, form), status=403)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _uploaded_message(outcome, "added"))
            _report_skipped(request, outcome)
            _report_refused(request, outcome)
            return redirect("case_detail", case_id=case.pk)
    return render(request, "web/case_detail.html", _case_context(request, case_id, form), status=400)


@never_cache
@login_required
@require_GET
def scan_card(request: HttpRequest, scan_id: int) -> HttpResponse:
    """One scan's card: polled by htmx while the scan is queued or processing."""
    scan = scan_get(user=request.user, scan_id=scan_id)
    if not covered_by_page_view(request.user, scan.case_id):  # the case page polls it
        audit_read(request, scan, detail="card")
    response = render(request, "web/_scan_card.html", {"scan": scan, "review_form": ReviewForm(auto_id=False)})
    if (scan.is_finished or scan.is_held) and request.headers.get("HX-Request"):
        # The last poll of this card: tell the page to refresh the case's counts and status.
        response["HX-Trigger"] = "scanFinished"
    return response


@never_cache
@login_required
@require_GET
def case_summary(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(user=request.user, case_id=case_id)
    scans = list(scan_list_for_case(case=case))
    studies = study_progress_for_case(case=case)
    unpacking = _unpacking(studies)
    if not covered_by_page_view(request.user, case.pk):  # the case page refreshes it
        audit_read(request, case, shown="summary of scans", ids=[scan.pk for scan in scans])
    study = case_study_summary(case=case, scans=scans)
    context = {"case": case, "study": study, "move_targets": _move_targets(request, study), "studies": studies,
               "studies_unpacking": unpacking}  # fmt: skip
    response = render(request, "web/_case_summary.html", context)
    if request.GET.get("unpacking") and not unpacking and request.headers.get("HX-Request"):
        response["HX-Refresh"] = "true"  # a study was unpacked: reload to show its slices' cards
    return response


def _unpacking(studies: list) -> bool:
    return any(progress.status in StudyStatus.IN_FLIGHT for progress in studies)


@login_required
@require_POST
def case_move_submit(request: HttpRequest, case_id: int) -> HttpResponse:
    """Move a case to the patient its DICOM files name (both of the user's clinic)."""
    case = case_get(user=request.user, case_id=case_id)
    try:
        patient = patient_get(user=request.user, patient_id=int(request.POST.get("patient", "")))
    except ValueError:
        messages.error(request, "Choose the patient to move the case to.")
        return redirect("case_detail", case_id=case.pk)
    try:
        case_move(case=case, patient=patient, by=request.user)
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, f"Case moved to {patient.name} (MRN {patient.mrn}).")
    return redirect("case_detail", case_id=case.pk)


@login_required
@require_POST
def scan_review_submit(request: HttpRequest, scan_id: int) -> HttpResponse:
    scan = scan_get(user=request.user, scan_id=scan_id)
    form = ReviewForm(request.POST)
    target = reverse("case_detail", args=[scan.case_id]) + f"#scan-{scan.pk}"
    if not form.is_valid():
        messages.error(request, "Choose to agree with the model or the reading that replaces it.")
        return redirect(target)
    try:
        scan_review(scan=scan, reviewer=request.user, **form.review_arguments())
    except (ValidationError, PermissionDenied) as exc:
        if isinstance(exc, PermissionDenied):
            audit_denied(request, scan, detail=f"review: {exc}")
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, "Review recorded.")
    return redirect(target)


@login_required
@require_POST
def scan_hold_submit(request: HttpRequest, scan_id: int) -> HttpResponse:
    """Release a held scan (text burnt into the image) to analysis, or discard it."""
    scan = scan_get(user=request.user, scan_id=scan_id)
    decision = request.POST.get("decision")
    decide = {"release": scan_hold_release, "discard": scan_hold_discard}.get(decision or "")
    if decide is None:
        messages.error(request, "Choose to release the scan to analysis or to discard it.")
    else:
        try:
            decide(scan=scan, by=request.user)  # PermissionDenied (clinic staff): the 403 page
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, "Released to analysis." if decision == "release" else "Scan discarded.")
    return redirect(reverse("case_detail", args=[scan.case_id]) + f"#scan-{scan.pk}")


@login_required
@require_POST
def scan_remove_submit(request: HttpRequest, scan_id: int) -> HttpResponse:
    """Remove a wrongly uploaded scan (soft, audited), back to its case."""
    scan = scan_get(user=request.user, scan_id=scan_id)
    try:
        scan_remove(scan=scan, by=request.user, reason=request.POST.get("reason", ""))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(reverse("case_detail", args=[scan.case_id]) + f"#scan-{scan.pk}")
    messages.success(request, f"Scan {scan.original_filename or scan.pk} removed from the case.")
    return redirect("case_detail", case_id=scan.case_id)


@login_required
@require_POST
def case_sign_submit(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(user=request.user, case_id=case_id)
    form = SignForm(request.POST)
    if form.is_valid():
        try:
            case_sign(case=case, signer=request.user, conclusion=form.cleaned_data["conclusion"])
        except PermissionDenied as exc:
            audit_denied(request, case, detail=f"sign: {exc}")
            messages.error(request, str(exc))
            return redirect("case_detail", case_id=case.pk)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Case signed. It has left the worklist; later changes need an addendum.")
            return redirect("case_detail", case_id=case.pk)
    context = _case_context(request, case_id, sign_form=form)
    return render(request, "web/case_detail.html", context, status=400)


@login_required
@require_POST
def case_addendum_submit(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(user=request.user, case_id=case_id)
    form = AddendumForm(request.POST)
    if not request.user.can_review:
        audit_denied(request, case, detail="addendum: not a radiologist")
        messages.error(request, "Only radiologists add addenda to a signed case.")
    elif not form.is_valid():
        messages.error(request, "Write the addendum's text.")
    else:
        try:
            case_addendum_add(case=case, author=request.user, text=form.cleaned_data["text"])
        except (ValidationError, PermissionDenied) as exc:
            messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
        else:
            messages.success(request, "Addendum added.")
    return redirect(reverse("case_detail", args=[case.pk]) + "#sign-off")


@login_required
@require_GET
def worklist(request: HttpRequest) -> HttpResponse:
    filters = WorklistFilters.from_query(request.GET)
    counts = case_worklist_counts(user=request.user)
    page = case_worklist_page(
        user=request.user,
        filters=filters,
        page=request.GET.get("page") or 1,
        per_page=CASES_PER_PAGE,
        total=counts["total"],  # the page's count when no filter narrows it
    )
    patient = patient_get(user=request.user, patient_id=filters.patient_id) if filters.patient_id else None
    audit_list_read(request, "case", [case.pk for case in page], what="worklist")
    return render(
        request,
        "web/worklist.html",
        {
            "page": page,
            "form": WorklistFilterForm(request.GET),
            "patient": patient,
            "counts": counts,
            "priority_names": Priority.NAMES,
        },
    )


@login_required
@require_GET
def patient_timeline(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient = patient_get(user=request.user, patient_id=patient_id)
    cases = case_timeline(user=request.user, patient=patient)
    audit_read(request, patient, shown="timeline of cases", ids=[case.pk for case in cases])
    return render(request, "web/patient_timeline.html", {"patient": patient, "cases": cases})


@login_required
@require_GET
def agreement(request: HttpRequest) -> HttpResponse:
    if not agreement_allowed(request.user):
        raise PermissionDenied("Only radiologists and clinic admins see the model's agreement.")
    version = request.GET.get("model_version", "")
    versions = agreement_by_version(user=request.user, model_version=version)
    audit_record(
        actor=request.user, action=AuditAction.VIEW, object_type="agreement", detail=f"model {version or 'all'}"
    )
    return render(
        request,
        "web/agreement.html",
        {
            "versions": versions,
            "all_versions": agreement_model_versions(user=request.user),
            "selected_version": version,
            "chart": agreement_chart_svg(versions),
            "model_labels": MODEL_LABELS,
            "reading_labels": READING_LABELS,
        },
    )


@login_required
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    filters = CaseFilters.from_query(request.GET)
    page = case_history(
        user=request.user, filters=filters, page=request.GET.get("page") or 1, per_page=CASES_PER_PAGE
    )
    # The patient filter arrives from a link (patients page); name it so it can be removed.
    patient = patient_get(user=request.user, patient_id=filters.patient_id) if filters.patient_id else None
    audit_list_read(request, "case", [case.pk for case in page], what="history")
    return render(
        request,
        "web/history.html",
        {"page": page, "form": HistoryFilterForm(request.GET), "patient": patient},
    )
