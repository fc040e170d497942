"""Clinic isolation for every URL that takes an object id: pages, API and media, each asked
for by {its own clinic, another clinic, nobody}, with every way in the URL accepts (pages: a
session; API and media: a session or an API token).

ISOLATION_URLS lists each such URL with the kind of object its id names. The first test walks
the URLconf and fails when a URL with an id is missing from the list, so a new page cannot
skip this check. For each URL, a user of clinic "south" asking for clinic "north"'s object
must get 404 (or 405 for a method the URL does not take) and see none of north's names,
north's own user must not get a 404, and an anonymous client gets the login page (pages, a
browser on media) or a 401 in the API's error shape (API, an API client on media). The lists
(API and pages) show another clinic nothing of north's.
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from apps.cases.models import Case, CaseAddendum
from apps.scans.models import ScanReview
from tests.testkit.data import dicom_scan

# URL name → (object kind, methods to try). Pages belong to apps/web; add new ones here.
ISOLATION_URLS: dict[str, tuple[str, tuple[str, ...]]] = {
    # pages (apps/web)
    "case_detail": ("case", ("get",)),
    "case_add_scans": ("case", ("get", "post")),
    "case_summary": ("case", ("get",)),
    "case_move": ("case", ("get", "post")),
    "scan_card": ("scan", ("get",)),
    "scan_review": ("scan", ("get", "post")),
    "scan_hold": ("scan", ("get", "post")),
    "scan_remove": ("scan", ("get", "post")),
    "case_sign": ("case", ("get", "post")),
    "case_addendum": ("case", ("get", "post")),
    "patient_timeline": ("patient", ("get",)),
    "patient_edit": ("patient", ("get", "post")),
    # API
    "api:patient-detail": ("patient", ("get",)),
    "api:case-detail": ("case", ("get",)),
    "api:case-scans": ("case", ("get", "post")),
    "api:case-studies": ("case", ("get",)),
    "api:scan-detail": ("scan", ("get",)),
    "api:scan-review": ("scan", ("post",)),
    "api:scan-reviews": ("scan", ("get", "post")),
    "api:scan-hold": ("scan", ("post",)),
    "api:case-sign": ("case", ("post",)),
    "api:case-report": ("case", ("get",)),
    "api:scan-heatmap": ("scan", ("get",)),
    # the DICOM network (apps/dicomnet)
    "api:dicom-node-detail": ("node", ("get", "patch", "delete")),
    "api:case-dicom-outbox": ("case", ("get",)),
    "api:case-fhir": ("case", ("get",)),
    # media
    "scans:image": ("scan", ("get",)),
    "scans:overlay": ("scan", ("get",)),
    "scans:heatmap": ("scan", ("get",)),
    "scans:dicom": ("scan", ("get",)),
}
# Served only for a scan uploaded as DICOM: tried on such a scan (in a second case of north's).
DICOM_URLS = {"scans:dicom"}

# Other arguments a URL needs besides the object id.
EXTRA_KWARGS: dict[str, dict[str, str]] = {"api:scan-heatmap": {"label": "meningioma"}}

ID_KWARGS = {"patient_id": "patient", "case_id": "case", "scan_id": "scan", "node_id": "node", "pk": None, "id": None}


def _walk(patterns, namespace=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                continue  # the admin is scoped per clinic in its own test (test_admin.py)
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, inner)
        elif isinstance(entry, URLPattern):
            yield f"{namespace}{entry.name}" if entry.name else None, entry


def urls_taking_an_object_id() -> dict[str, set[str]]:
    found = {}
    for name, pattern in _walk(get_resolver().url_patterns):
        kwargs = set(pattern.pattern.converters) & set(ID_KWARGS)
        if kwargs:
            found[name or f"<unnamed {pattern.pattern}>"] = kwargs
    return found


def test_every_url_with_an_object_id_is_in_the_isolation_list():
    found = urls_taking_an_object_id()
    missing = sorted(set(found) - set(ISOLATION_URLS))
    assert not missing, f"add these URLs to ISOLATION_URLS in {__file__}: {missing}"
    for name, kwargs in found.items():
        assert kwargs == {f"{ISOLATION_URLS[name][0]}_id"}, f"{name} takes {kwargs}"


def _ways_in(name: str) -> tuple[str, ...]:
    return ("session",) if ":" not in name else ("token", "session")


CASES = [(name, way) for name in sorted(ISOLATION_URLS) for way in _ways_in(name)]


def _login(client, user, way):
    if way == "token":
        from tests.testkit.data import api_token

        client.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    else:
        client.force_login(user)


def _north_strings(north) -> list[str]:
    return [north.patient.name, north.patient.mrn, north.case.title, north.clinic.name + " "]


def _object(world, kind):
    if kind == "node":  # a DICOM node of the world's clinic (apps/dicomnet)
        from apps.dicomnet.services import node_create

        ae_title = f"{world.clinic.name.upper()}_PACS"
        return node_create(created_by=world.admin, ae_title=ae_title, host="127.0.0.1", port=4242)
    return {"patient": world.patient, "case": world.case, "scan": world.scan}[kind]


@pytest.mark.parametrize(("name", "way"), CASES)
def test_another_clinics_object_is_404_and_the_owner_is_served(
    name, way, north, south, client, django_capture_on_commit_callbacks
):
    found = urls_taking_an_object_id()
    if name not in found:
        pytest.fail(f"{name} is in ISOLATION_URLS but not in the URLconf; remove or fix it")
    kind, methods = ISOLATION_URLS[name]
    target = dicom_scan(north, django_capture_on_commit_callbacks) if name in DICOM_URLS else _object(north, kind)
    url = reverse(name, kwargs={f"{kind}_id": target.pk, **EXTRA_KWARGS.get(name, {})})

    # The owner's user (a radiologist, who may review) is served: the URL works, so a 404 below means isolation.
    _login(client, north.radiologist, way)
    owner = {method: getattr(client, method)(url).status_code for method in methods}
    assert all(code != 404 for code in owner.values()), f"{name}: owner got {owner}"
    assert any(code < 400 or code in (400, 403) for code in owner.values()), f"{name}: owner got {owner}"

    client.logout()
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    _login(client, south.radiologist, way)
    responses = {method: getattr(client, method)(url) for method in methods}
    other = {method: response.status_code for method, response in responses.items()}
    assert all(code in (404, 405) for code in other.values()), f"{name}: another clinic got {other}"
    assert 404 in other.values(), f"{name}: another clinic got {other}"
    for response in responses.values():
        body = response.content.decode(errors="replace")
        assert not [s for s in _north_strings(north) if s in body], f"{name}: north's data in the answer"
        if way == "token":  # an API client: the error in the API's shape, never an HTML page
            assert response.json()["error"]["code"] in ("not_found", "method_not_allowed")
    # Nothing changed on north's side.
    assert not ScanReview.objects.filter(scan__case__clinic=north.clinic, reviewer=south.radiologist).exists()
    assert not Case.objects.filter(clinic=north.clinic, signed_by=south.radiologist).exists()
    assert not CaseAddendum.objects.filter(case__clinic=north.clinic, author=south.radiologist).exists()
    assert north.case.scans.count() == 1


@pytest.mark.parametrize(("name", "way"), [(n, w) for n in sorted(ISOLATION_URLS) for w in ("browser", "api-client")])
def test_anonymous_gets_the_login_page_or_a_401_never_the_object(
    name, way, north, client, django_capture_on_commit_callbacks
):
    kind, methods = ISOLATION_URLS[name]
    target = dicom_scan(north, django_capture_on_commit_callbacks) if name in DICOM_URLS else _object(north, kind)
    url = reverse(name, kwargs={f"{kind}_id": target.pk, **EXTRA_KWARGS.get(name, {})})
    headers = {"HTTP_ACCEPT": "application/json"} if way == "api-client" else {"HTTP_ACCEPT": "text/html"}
    for method in methods:
        response = getattr(client, method)(url, **headers)
        body = response.content.decode(errors="replace")
        assert not [s for s in _north_strings(north) if s in body], f"{name}: north's data shown to nobody"
        if name.startswith("api:") or (name.startswith("scans:") and way == "api-client"):
            # 406: a PDF-only endpoint asked for JSON is refused before authentication.
            assert response.status_code in (401, 406), (name, method, response.status_code)
            assert response.json()["error"]["code"] in ("not_authenticated", "not_acceptable")
        elif response.status_code != 405:
            assert response.status_code == 302, (name, method, response.status_code)
            assert response["Location"].startswith(reverse("login"))


LIST_URLS = ("api:patient-list", "api:case-list", "patients", "history", "dashboard", "patient_search")


@pytest.mark.parametrize("name", LIST_URLS)
def test_lists_show_another_clinic_nothing(name, north, south, client):
    _login(client, south.radiologist, "token" if name.startswith("api:") else "session")
    # The patient picker's search lists nothing until something is typed: a term both match.
    response = client.get(reverse(name), {"q": "Patient"} if name == "patient_search" else {})
    assert response.status_code == 200
    body = response.content.decode()
    assert south.patient.name in body  # the list works: south sees its own
    assert not [s for s in _north_strings(north) if s in body], f"{name}: north's data in south's list"


def test_metrics_endpoint_carries_no_patient_data(north, client):
    """/metrics (django-prometheus) is unauthenticated for the in-network scraper (the public
    proxy refuses it: tests/ops/test_compose.py): it counts by view name and status, never by
    path, so no patient, case or clinic appears in it even after their pages were served."""
    client.force_login(north.staff)
    assert client.get(reverse("case_detail", kwargs={"case_id": north.case.pk})).status_code == 200
    client.logout()
    response = client.get("/metrics")
    assert response.status_code == 200
    body = response.content.decode()
    assert "django_http_requests_total_by_view_transport_method_total" in body  # the series are there
    assert not [s for s in _north_strings(north) if s in body]
    assert f"/cases/{north.case.pk}" not in body
