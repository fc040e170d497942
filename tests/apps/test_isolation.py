"""Clinic isolation for every URL that takes an object id: pages, API and media.

ISOLATION_URLS lists each such URL with the kind of object its id names. The first test walks
the URLconf and fails when a URL with an id is missing from the list, so a new page cannot
skip this check. For each URL, a user of clinic "south" asking for clinic "north"'s object
must get 404 (or 405 for a method the URL does not take), and north's own user must not.
"""

import pytest
from coredata import dicom_scan
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from apps.cases.models import Case, CaseAddendum
from apps.scans.models import ScanReview

# URL name → (object kind, methods to try). Pages belong to apps/web; add new ones here.
ISOLATION_URLS: dict[str, tuple[str, tuple[str, ...]]] = {
    # pages (apps/web)
    "case_detail": ("case", ("get",)),
    "case_add_scans": ("case", ("get", "post")),
    "case_summary": ("case", ("get",)),
    "scan_card": ("scan", ("get",)),
    "scan_review": ("scan", ("get", "post")),
    "case_sign": ("case", ("get", "post")),
    "case_addendum": ("case", ("get", "post")),
    "patient_timeline": ("patient", ("get",)),
    # API
    "api:patient-detail": ("patient", ("get",)),
    "api:case-detail": ("case", ("get",)),
    "api:case-scans": ("case", ("get", "post")),
    "api:scan-detail": ("scan", ("get",)),
    "api:scan-review": ("scan", ("post",)),
    "api:scan-reviews": ("scan", ("get", "post")),
    "api:case-sign": ("case", ("post",)),
    "api:case-report": ("case", ("get",)),
    "api:scan-heatmap": ("scan", ("get",)),
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

ID_KWARGS = {"patient_id": "patient", "case_id": "case", "scan_id": "scan", "pk": None, "id": None}


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


def _login(client, user, name):
    if name.startswith("api:"):
        from coredata import api_token

        client.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    else:
        client.force_login(user)


def _object(world, kind):
    return {"patient": world.patient, "case": world.case, "scan": world.scan}[kind]


@pytest.mark.parametrize("name", sorted(ISOLATION_URLS))
def test_another_clinics_object_is_404_and_the_owner_is_served(
    name, north, south, client, django_capture_on_commit_callbacks
):
    found = urls_taking_an_object_id()
    if name not in found:
        pytest.fail(f"{name} is in ISOLATION_URLS but not in the URLconf; remove or fix it")
    kind, methods = ISOLATION_URLS[name]
    target = dicom_scan(north, django_capture_on_commit_callbacks) if name in DICOM_URLS else _object(north, kind)
    url = reverse(name, kwargs={f"{kind}_id": target.pk, **EXTRA_KWARGS.get(name, {})})

    # The owner's user (a radiologist, who may review) is served: the URL works, so a 404 below means isolation.
    _login(client, north.radiologist, name)
    owner = {method: getattr(client, method)(url).status_code for method in methods}
    assert all(code != 404 for code in owner.values()), f"{name}: owner got {owner}"
    assert any(code < 400 or code in (400, 403) for code in owner.values()), f"{name}: owner got {owner}"

    client.logout()
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    _login(client, south.radiologist, name)
    other = {method: getattr(client, method)(url).status_code for method in methods}
    assert all(code in (404, 405) for code in other.values()), f"{name}: another clinic got {other}"
    assert 404 in other.values(), f"{name}: another clinic got {other}"
    # Nothing changed on north's side.
    assert not ScanReview.objects.filter(scan__case__clinic=north.clinic, reviewer=south.radiologist).exists()
    assert not Case.objects.filter(clinic=north.clinic, signed_by=south.radiologist).exists()
    assert not CaseAddendum.objects.filter(case__clinic=north.clinic, author=south.radiologist).exists()
    assert north.case.scans.count() == 1
