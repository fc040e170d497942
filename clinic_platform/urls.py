"""Root URLs: pages (apps.web), the REST API, clinic-checked media, Django admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("clinic_platform.api_urls")),
    path("media/", include("apps.scans.urls")),
    path("", include("apps.web.urls")),
]
