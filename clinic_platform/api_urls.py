"""/api/ routes (namespace "api")."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from apps.accounts.apis import TokenApi
from apps.audit.apis import AuditEventListApi
from apps.cases.apis import CaseDetailApi, CaseListApi, CaseReportApi, CaseSignApi, WorklistApi
from apps.dicomnet.apis import CaseDicomOutboxApi, CaseFhirApi, DicomNodeDetailApi, DicomNodeListApi
from apps.patients.apis import PatientDetailApi, PatientListApi
from apps.scans.apis import (
    AgreementApi,
    AgreementReadingsCsvApi,
    CaseScansApi,
    CaseStudiesApi,
    ScanDetailApi,
    ScanHeatmapApi,
    ScanHoldApi,
    ScanReviewApi,
    ScanReviewsApi,
)

app_name = "api"

urlpatterns = [
    path("auth/token/", TokenApi.as_view(), name="token"),
    path("patients/", PatientListApi.as_view(), name="patient-list"),
    path("patients/<int:patient_id>/", PatientDetailApi.as_view(), name="patient-detail"),
    path("cases/", CaseListApi.as_view(), name="case-list"),
    path("cases/<int:case_id>/", CaseDetailApi.as_view(), name="case-detail"),
    path("cases/<int:case_id>/scans/", CaseScansApi.as_view(), name="case-scans"),
    path("cases/<int:case_id>/studies/", CaseStudiesApi.as_view(), name="case-studies"),
    path("scans/<int:scan_id>/", ScanDetailApi.as_view(), name="scan-detail"),
    path("scans/<int:scan_id>/heatmaps/<str:label>/", ScanHeatmapApi.as_view(), name="scan-heatmap"),
    path("scans/<int:scan_id>/review/", ScanReviewApi.as_view(), name="scan-review"),
    path("scans/<int:scan_id>/hold/", ScanHoldApi.as_view(), name="scan-hold"),
    path("audit-events/", AuditEventListApi.as_view(), name="audit-event-list"),
    # The radiologist's desk (issue 8)
    path("scans/<int:scan_id>/reviews/", ScanReviewsApi.as_view(), name="scan-reviews"),
    path("cases/<int:case_id>/sign/", CaseSignApi.as_view(), name="case-sign"),
    path("cases/<int:case_id>/report.pdf", CaseReportApi.as_view(), name="case-report"),
    path("worklist/", WorklistApi.as_view(), name="worklist"),
    path("agreement/", AgreementApi.as_view(), name="agreement"),
    path("agreement/readings.csv", AgreementReadingsCsvApi.as_view(), name="agreement-readings"),
    # The DICOM network (issue 18, apps/dicomnet)
    path("dicom-nodes/", DicomNodeListApi.as_view(), name="dicom-node-list"),
    path("dicom-nodes/<int:node_id>/", DicomNodeDetailApi.as_view(), name="dicom-node-detail"),
    path("cases/<int:case_id>/dicom-outbox/", CaseDicomOutboxApi.as_view(), name="case-dicom-outbox"),
    path("cases/<int:case_id>/fhir/", CaseFhirApi.as_view(), name="case-fhir"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
]
