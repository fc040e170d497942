"""Server-rendered pages. Thin on purpose: read through selectors, write through services,
render. Every read is clinic-scoped by the selector, so another clinic's ids are a 404."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.audit.models import AuditAction
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
from apps.cases.services import case_addendum_add, case_create, case_sign
from apps.cases.worklist import (
    Priority,
    WorklistFilters,
    case_worklist_counts,
    case_worklist_page,
)
from apps.patients.selectors import patient_get, patient_list
from apps.patients.services import patient_create
from apps.scans.agreement import agreement_allowed, agreement_by_version, agreement_model_versions
from apps.scans.labels import MODEL_LABELS, READING_LABELS
from apps.scans.selectors import case_study_summary, scan_get, scan_list_for_case, scan_queue_stats
from apps.scans.services import UploadOutcome, scan_review, scans_upload

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


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "web/dashboard.html",
        {
            "recent_cases": case_recent(user=request.user, limit=10),
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
    audit_record(actor=request.user, action=AuditAction.VIEW, object_type="patient", request=request, detail="list")
    return render(request, "web/patients.html", {"form": form, "page": page, "search": search}, status=status)


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
                    outcome = scans_upload(case=case, uploaded_by=request.user, uploads=data["files"])
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"Case opened with {len(outcome.scans)} scan(s); analysis has been queued.")
                _report_skipped(request, outcome)
                return redirect("case_detail", case_id=case.pk)
        return render(request, "web/case_new.html", {"form": form}, status=400)
    form = CaseCreateForm(user=request.user, initial={"patient": request.GET.get("patient")})
    return render(request, "web/case_new.html", {"form": form})


def _upload_form_class(case: Case) -> type[ScanUploadForm]:
    return SignedCaseUploadForm if case.is_signed else ScanUploadForm


def _report_skipped(request: HttpRequest, outcome: UploadOutcome) -> None:
    """Files of a zipped study that were not stored, each with its reason."""
    if outcome.skipped:
        listed = "; ".join(f"{item.name} ({item.reason})" for item in outcome.skipped[:10])
        more = f" and {len(outcome.skipped) - 10} more" if len(outcome.skipped) > 10 else ""
        messages.warning(request, f"Skipped {len(outcome.skipped)} file(s): {listed}{more}.")


def _case_context(
    request: HttpRequest,
    case_id: int,
    upload_form: ScanUploadForm | None = None,
    sign_form: SignForm | None = None,
) -> dict:
    case = case_get(user=request.user, case_id=case_id)
    scans = list(scan_list_for_case(case=case))
    return {
        "case": case,
        "scans": scans,
        "study": case_study_summary(case=case, scans=scans),
        "upload_form": upload_form or _upload_form_class(case)(),
        "review_form": ReviewForm(auto_id=False),  # one per scan card: no duplicate ids
        "sign_form": sign_form or SignForm(initial={"conclusion": case_reading_summary(case=case)}),
        "addendum_form": AddendumForm(),
    }


@login_required
@require_GET
def case_detail(request: HttpRequest, case_id: int) -> HttpResponse:
    context = _case_context(request, case_id)
    audit_record(actor=request.user, action=AuditAction.VIEW, obj=context["case"], request=request)
    return render(request, "web/case_detail.html", context)


@login_required
@require_POST
def case_add_scans(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(user=request.user, case_id=case_id)
    form = _upload_form_class(case)(request.POST, request.FILES)
    if form.is_valid():
        try:
            outcome = scans_upload(
                case=case,
                uploaded_by=request.user,
                uploads=form.cleaned_data["files"],
                addendum=form.cleaned_data.get("addendum", ""),
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"{len(outcome.scans)} scan(s) added; analysis has been queued.")
            _report_skipped(request, outcome)
            return redirect("case_detail", case_id=case.pk)
    return render(request, "web/case_detail.html", _case_context(request, case_id, form), status=400)


@never_cache
@login_required
@require_GET
def scan_card(request: HttpRequest, scan_id: int) -> HttpResponse:
    """One scan's card: polled by htmx while the scan is queued or processing."""
    scan = scan_get(user=request.user, scan_id=scan_id)
    response = render(request, "web/_scan_card.html", {"scan": scan, "review_form": ReviewForm(auto_id=False)})
    if scan.is_finished and request.headers.get("HX-Request"):
        # The last poll of this card: tell the page to refresh the case's counts and status.
        response["HX-Trigger"] = "scanFinished"
    return response


@never_cache
@login_required
@require_GET
def case_summary(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(user=request.user, case_id=case_id)
    scans = list(scan_list_for_case(case=case))
    return render(
        request, "web/_case_summary.html", {"case": case, "study": case_study_summary(case=case, scans=scans)}
    )


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
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, "Review recorded.")
    return redirect(target)


@login_required
@require_POST
def case_sign_submit(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(user=request.user, case_id=case_id)
    form = SignForm(request.POST)
    if form.is_valid():
        try:
            case_sign(case=case, signer=request.user, conclusion=form.cleaned_data["conclusion"])
        except PermissionDenied as exc:
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
    return render(request, "web/patient_timeline.html", {"patient": patient, "cases": cases})


@login_required
@require_GET
def agreement(request: HttpRequest) -> HttpResponse:
    if not agreement_allowed(request.user):
        raise PermissionDenied("Only radiologists and clinic admins see the model's agreement.")
    version = request.GET.get("model_version", "")
    versions = agreement_by_version(user=request.user, model_version=version)
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
    return render(
        request,
        "web/history.html",
        {"page": page, "form": HistoryFilterForm(request.GET), "patient": patient},
    )
