"""Django core settings. Docs: https://docs.djangoproject.com/en/5.2/ref/settings/"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from .env import BASE_DIR, VAR_DIR, env
from .storage import MEDIA_STORAGE

DEBUG = env.bool("DJANGO_DEBUG", default=False)

# A default key is only acceptable on a developer's machine; production must set its own.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set DJANGO_SECRET_KEY (or DJANGO_DEBUG=1 for local development).")
    SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105 (DEBUG only)

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "drf_spectacular",
    "csp",
    "apps.accounts",
    "apps.patients",
    "apps.cases",
    "apps.scans",
    "apps.web",
    "apps.audit",
    "apps.dicomnet",
    "django_prometheus",  # /metrics for the web (requests, latencies, responses by view)
]

MIDDLEWARE = [
    "clinic_platform.health.HealthzMiddleware",  # first: the probe must not depend on Host/scheme
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "clinic_platform.uploads.RequestLimitMiddleware",  # body limits before anything reads the body
    "apps.accounts.timezones.ClinicTimeZoneMiddleware",  # times in the user's clinic's zone
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Lets services and signal handlers audit with the client address of the request served.
    "apps.audit.context.AuditRequestMiddleware",
    # A 404 raised in a view is the one 404 answer, never DEBUG's technical page (`make run`).
    "clinic_platform.errors.NoDebugNotFoundMiddleware",
    # Counts every response, the lockout's 429 included (it wraps axes).
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "clinic_platform.urls"
WSGI_APPLICATION = "clinic_platform.wsgi.application"
ASGI_APPLICATION = "clinic_platform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-db-url
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    (VAR_DIR).mkdir(parents=True, exist_ok=True)
    # Web, worker and beat share one SQLite file locally: wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("timeout", 20)
    # Take the write lock when a transaction starts: a read-then-write transaction (claiming a
    # scan) otherwise fails at once with "database is locked" instead of waiting its turn.
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    DATABASES["default"]["CONN_MAX_AGE"] = 0

# PostgreSQL with two roles (docs/database-roles.md): set only for `migrate`, which runs as the
# owner and grants this runtime role (what web, workers and beat connect as) everything but
# changing the audit trail (apps/audit/db_roles.py). Empty: one role, nothing granted.
DATABASE_RUNTIME_ROLE = env.str("DATABASE_RUNTIME_ROLE", default="").strip()

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
# Shared ward PCs: a session ends when the browser closes, and after 8 hours in any case.
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE", default=8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = env.bool("DJANGO_SESSION_EXPIRE_AT_BROWSER_CLOSE", default=True)
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# Date-times everywhere (the admin included) as 2026-03-01 14:05 CET: with the zone named.
FORMAT_MODULE_PATH = ["clinic_platform.formats"]

# Static files through whitenoise: https://whitenoise.readthedocs.io/en/stable/django.html
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

# Uploaded scans and heatmaps. They are never served from MEDIA_URL: apps/scans/views.py
# serves them after checking the clinic. The URL below is deliberately not routed.
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/files/"
STORAGES = {
    "default": MEDIA_STORAGE,  # S3 when S3_ENDPOINT_URL and S3_BUCKET are set (settings/storage.py)
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Memory per request: a multipart upload is held as up to this many files (each up to
# mri.intake.limits.MAX_UPLOAD_BYTES, read into memory to be checked). More files: a 400.
# The proxy in front must also cap the body (docs/platform.md, "Uploads and memory").
DATA_UPLOAD_MAX_NUMBER_FILES = env.int("DATA_UPLOAD_MAX_NUMBER_FILES", default=20)
# The whole body of a signed-in upload; counted while it streams (clinic_platform/uploads.py),
# so a request is stopped at the first chunk past it. Room for one zipped DICOM study at its cap
# (DICOM_ZIP_MAX_BYTES, 256 MiB) plus the form; the proxy's client_max_body_size is the same.
# Anonymous clients get DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) and never a temporary file.
UPLOAD_MAX_REQUEST_BYTES = env.int("UPLOAD_MAX_REQUEST_BYTES", default=272 * 2**20)
FILE_UPLOAD_HANDLERS = [
    "clinic_platform.uploads.StreamLimitUploadHandler",  # first: sees every chunk before it is kept
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# HTTPS: cookies, HSTS, redirect and the proxy's scheme header: clinic_platform/settings/https.py.

# LOG_FORMAT=json: one JSON object per line (python-json-logger) with `scan_id` on every line
# of a scan's lifecycle (clinic_platform/logcontext.py), for a log collector; plain otherwise.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "scan_id": {"()": "clinic_platform.logcontext.ScanIdFilter"},
        "no_query": {"()": "clinic_platform.logcontext.StripQueryFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(process)d %(scan_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["scan_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # runserver's access log (`make run`): request lines without query strings (patient names).
    "loggers": {
        "django.server": {"handlers": ["console"], "filters": ["no_query"], "level": "INFO", "propagate": False}
    },
}
