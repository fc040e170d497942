"""Django REST framework and drf-spectacular.

Docs: https://www.django-rest-framework.org/api-guide/settings/ and
https://drf-spectacular.readthedocs.io/en/latest/settings.html
"""

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["clinic_platform.api.IsClinicMember"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    # Services raise django.core.exceptions.ValidationError; the API answers 400 with it.
    "EXCEPTION_HANDLER": "clinic_platform.api.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Clinic MRI platform API",
    "DESCRIPTION": "Patients, cases and brain-MRI scans analysed by the platform's model workers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}
