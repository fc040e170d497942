"""Django REST framework and drf-spectacular.

Docs: https://www.django-rest-framework.org/api-guide/settings/ and
https://drf-spectacular.readthedocs.io/en/latest/settings.html
"""

from .env import env

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
    # Password guessing on POST auth/token/ (ScopedRateThrottle, per client IP). Counted in the
    # default cache: per web process with the local-memory cache.
    "DEFAULT_THROTTLE_RATES": {"auth-token": env.str("API_TOKEN_THROTTLE_RATE", default="10/min")},
    # The client IP is the last address the proxy added to X-Forwarded-For. 0 (no proxy):
    # REMOTE_ADDR. Default: 1 when DJANGO_SECURE says a TLS proxy is in front, else 0.
    "NUM_PROXIES": env.int(
        "DJANGO_NUM_PROXIES",
        default=1 if env.bool("DJANGO_SECURE", default=not env.bool("DJANGO_DEBUG", default=False)) else 0,
    ),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Clinic MRI platform API",
    "DESCRIPTION": "Patients, cases and brain-MRI scans analysed by the platform's model workers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}
