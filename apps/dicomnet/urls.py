"""/dicomweb/ routes (DICOMweb; namespace "dicomweb")."""

from django.urls import path

from .apis import StowRsApi

app_name = "dicomweb"

urlpatterns = [
    path("studies", StowRsApi.as_view(), name="stow"),
]
