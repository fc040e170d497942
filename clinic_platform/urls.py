"""Root URLs: pages (apps.web), the REST API, clinic-checked media, Django admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("clinic_platform.api_urls")),
    path("media/", include("apps.scans.urls")),
    # Prometheus scrape endpoint (django-prometheus): counts and latencies, no patient data.
    # Keep it off the public internet at the proxy (docs/operations.md, "Metrics").
    path("", include("django_prometheus.urls")),
    path("", include("apps.web.urls")),
]
