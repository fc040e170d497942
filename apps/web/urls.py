"""Page URLs, without a namespace so `{% url "login" %}` and LOGIN_URL = "login" resolve.
Include from the root URLconf with `path("", include("apps.web.urls"))`."""
from django.contrib.auth import views as auth_views
from django.urls import path

from . import views
from .forms import ClinicLoginForm

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=ClinicLoginForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("patients/", views.patients, name="patients"),
    path("cases/new/", views.case_new, name="case_new"),
    path("cases/<int:case_id>/", views.case_detail, name="case_detail"),
    path("cases/<int:case_id>/scans/", views.case_add_scans, name="case_add_scans"),
    path("cases/<int:case_id>/summary/", views.case_summary, name="case_summary"),
    path("cases/<int:case_id>/move/", views.case_move_submit, name="case_move"),
    path("scans/<int:scan_id>/card/", views.scan_card, name="scan_card"),
    path("scans/<int:scan_id>/review/", views.scan_review_submit, name="scan_review"),
    path("scans/<int:scan_id>/hold/", views.scan_hold_submit, name="scan_hold"),
    path("scans/<int:scan_id>/remove/", views.scan_remove_submit, name="scan_remove"),
    path("history/", views.history, name="history"),
    # The radiologist's desk (issue 8)
    path("worklist/", views.worklist, name="worklist"),
    path("cases/<int:case_id>/sign/", views.case_sign_submit, name="case_sign"),
    path("cases/<int:case_id>/addenda/", views.case_addendum_submit, name="case_addendum"),
    path("patients/search/", views.patient_search, name="patient_search"),
    path("patients/<int:patient_id>/edit/", views.patient_edit, name="patient_edit"),
    path("patients/<int:patient_id>/timeline/", views.patient_timeline, name="patient_timeline"),
    path("agreement/", views.agreement, name="agreement"),
]
