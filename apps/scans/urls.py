"""Clinic-checked media: /media/scans/<id>/image|overlay|heatmap|dicom."""

from django.urls import path

from . import views

app_name = "scans"

urlpatterns = [
    path("scans/<int:scan_id>/image", views.scan_image, name="image"),
    path("scans/<int:scan_id>/overlay", views.scan_overlay, name="overlay"),
    path("scans/<int:scan_id>/heatmap", views.scan_heatmap, name="heatmap"),
    path("scans/<int:scan_id>/dicom", views.scan_dicom, name="dicom"),
]
