"""Django REST framework and drf-spectacular.

Docs: https://www.django-rest-framework.org/api-guide/settings/ and
https://drf-spectacular.readthedocs.io/en/latest/settings.html
"""

from .env import env

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["clinic_platform.api.IsClinicMember"],
    # drf-spectacular's, plus the error responses of every operation (clinic_platform/schema.py).
    "DEFAULT_SCHEMA_CLASS": "clinic_platform.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    # Every error in one JSON shape, {"error": {"code", "message", "fields"}}; services raise
    # django.core.exceptions.ValidationError, answered as a 400 (clinic_platform/errors.py).
    "EXCEPTION_HANDLER": "clinic_platform.errors.exception_handler",
    # Password guessing on POST auth/token/ (ScopedRateThrottle, per client IP), on top of the
    # django-axes lockout. Counted in the default cache: Redis, shared by every process, when set.
    "DEFAULT_THROTTLE_RATES": {"auth-token": env.str("API_TOKEN_THROTTLE_RATE", default="10/min")},
    # The client IP for the throttle: the same rule as clinic_platform/client_ip.py (X-Forwarded-For
    # only with TRUSTED_PROXY_COUNT proxies of ours in front; default none: REMOTE_ADDR).
    "NUM_PROXIES": env.int("TRUSTED_PROXY_COUNT", default=0),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Clinic MRI platform API",
    "DESCRIPTION": "Patients, cases and brain-MRI scans analysed by the platform's model workers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema maps every endpoint: for signed-in users and token clients only.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}
