"""Settings for the test suite: the base settings plus fast hashing, an in-memory broker and
media in a throw-away folder. DATABASE_URL and REDIS_URL still apply (CI runs on them).

Outside the settings package on purpose: the environment defaults below must be in place
before clinic_platform.settings is imported."""

import os
import tempfile

os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("DJANGO_SECURE", "0")
if not os.environ.get("REDIS_URL"):
    # Published messages stay in this process; tests read them back from the queue.
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="clinic-test-media-"))

from clinic_platform.settings import *  # noqa: F403
from clinic_platform.settings.env import VAR_DIR

# The tests clear it between tests (throttle counts): never a shared server.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "clinic-tests"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "test-celerybeat-schedule")
# Whitenoise warns on every request when STATIC_ROOT does not exist (no collectstatic in tests).
STATIC_ROOT = tempfile.mkdtemp(prefix="clinic-test-static-")
