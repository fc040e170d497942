"""Clinic-checked media: /media/scans/<id>/image|overlay|heatmap|dicom."""

from django.urls import path

from . import views

app_name = "scans"

urlpatterns = [
    path(f"scans/<int:scan_id>/{kind}", views.scan_file, {"kind": kind}, name=kind) for kind in views.SCAN_FILES
]
