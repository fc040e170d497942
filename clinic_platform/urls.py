"""Root URLs: pages (apps.web), the REST API, clinic-checked media, Django admin."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views import defaults

from clinic_platform.errors import page_or_json, unmatched_url
from clinic_platform.uploads import upload_allowed

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("clinic_platform.api_urls")),
    path("media/", include("apps.scans.urls")),
    # The TLS proxy asks it before accepting a large body (deploy/nginx, auth_request).
    path("proxy/upload-allowed", upload_allowed, name="upload_allowed"),
    path("dicomweb/", include("apps.dicomnet.urls")),  # STOW-RS (apps/dicomnet, docs/pacs.md)
    # Prometheus scrape endpoint (django-prometheus): counts and latencies, no patient data.
    # Keep it off the public internet at the proxy (docs/operations.md, "Metrics").
    path("", include("django_prometheus.urls")),
    path("", include("apps.web.urls")),
    # Last: what matches nothing is the one 404 (JSON for API clients), even under DEBUG.
    re_path(r"^(?P<path>.*)$", unmatched_url, name="unmatched"),
]

# API clients (an /api/ URL, a token, or JSON preferred) get the one JSON error shape even for
# URLs that match nothing and errors outside the views; pages keep Django's HTML.
handler400 = page_or_json(defaults.bad_request)
handler403 = page_or_json(defaults.permission_denied)
handler404 = page_or_json(defaults.page_not_found)
handler500 = page_or_json(defaults.server_error)
