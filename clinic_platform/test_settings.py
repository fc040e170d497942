"""Settings for the test suite: the base settings plus fast hashing, an in-memory broker and
media in a throw-away folder. DATABASE_URL and REDIS_URL still apply (CI runs on them).

Outside the settings package on purpose: the environment defaults below must be in place
before clinic_platform.settings is imported."""

import os
import tempfile
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("DJANGO_SECURE", "0")
# The outbox waits for a study to be stable (no instance for this long) before reporting on it:
# none in tests (and their workers), except those about stability, which set it themselves.
os.environ.setdefault("DICOM_STUDY_STABLE_SECONDS", "0")

# The tests read back (consume) what they publish, so on Redis they must never touch a database
# something else uses, like a developer's running stack on db 0: REDIS_URL's database number is
# replaced by TEST_REDIS_DB (13; the e2e tests use 15 and the queue benchmark 14). An explicit
# CELERY_BROKER_URL (the e2e harness pins its worker's) is left as given.
TEST_REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "13"))


def redis_url_with_db(url: str, db: int) -> str:
    """`url` pointing at database `db`: the path for redis:// and rediss://, `?db=` for unix://."""
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        return urlunsplit(parts._replace(path=f"/{db}"))
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
    return urlunsplit(parts._replace(query=urlencode(query)))


if os.environ.get("REDIS_URL"):
    if not os.environ.get("CELERY_BROKER_URL"):
        os.environ["REDIS_URL"] = redis_url_with_db(os.environ["REDIS_URL"], TEST_REDIS_DB)
else:
    # Published messages stay in this process; tests read them back from the queue.
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="clinic-test-media-"))

from clinic_platform.settings import *  # noqa: F403
from clinic_platform.settings.env import VAR_DIR

# The tests clear it between tests (throttle and lockout counts): never a shared server, except
# for web processes a test starts itself on its own Redis database (TEST_SHARED_CACHE=1).
if os.environ.get("TEST_SHARED_CACHE") != "1":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "clinic-tests"}}
AXES_HANDLER = "apps.accounts.signin_guard.ResilientCacheHandler"  # lockout counts in that cache
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "test-celerybeat-schedule")
# Whitenoise warns on every request when STATIC_ROOT does not exist (no collectstatic in tests).
STATIC_ROOT = tempfile.mkdtemp(prefix="clinic-test-static-")
SILENCED_SYSTEM_CHECKS = ["axes.W001"]  # the per-process cache above is meant for the suite
