"""Settings from the environment, checked in fresh processes (settings are read once per process)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys, django
django.setup()
from django.conf import settings
import clinic_platform.urls, clinic_platform.wsgi, workers.tasks  # what the web process loads
from clinic_platform.celery import app
print(json.dumps({
    "db": settings.DATABASES["default"]["ENGINE"], "db_name": str(settings.DATABASES["default"]["NAME"]),
    "media": str(settings.MEDIA_ROOT), "broker": app.conf.broker_url, "debug": settings.DEBUG,
    "hosts": settings.ALLOWED_HOSTS, "tensorflow": "tensorflow" in sys.modules,
    "folder_in": (app.conf.broker_transport_options or {}).get("data_folder_in"),
    "max_files": settings.DATA_UPLOAD_MAX_NUMBER_FILES,
}))
"""


def run_python(code: str, *, settings: str, drop: tuple[str, ...], timeout: float = 120, **env: str):
    """`python -c code` from the repository, in this environment less the variables starting with
    `drop`, plus DJANGO_SETTINGS_MODULE=settings and `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    clean.update(DJANGO_SETTINGS_MODULE=settings, **env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=timeout, check=False
    )


def printed_json(out: subprocess.CompletedProcess) -> dict:
    """The JSON a probe printed last, once it exited cleanly."""
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def probe(tmp_path, **env) -> dict:
    drop = ("DJANGO_", "CELERY_", "DATABASE_", "REDIS_", "MEDIA_ROOT")
    return printed_json(run_python(PROBE, settings="clinic_platform.settings", drop=drop, **env))


def test_local_defaults_need_no_server_and_never_load_tensorflow(tmp_path):
    queue = tmp_path / "queue"
    settings = probe(tmp_path, DJANGO_DEBUG="1", CELERY_QUEUE_DIR=str(queue))
    assert settings["db"] == "django.db.backends.sqlite3"
    assert settings["db_name"] == str(ROOT / "var" / "db.sqlite3")
    assert settings["media"] == str(ROOT / "var" / "media")
    assert settings["broker"] == "filesystem://"
    assert settings["folder_in"] == str(queue / "messages")
    assert queue.joinpath("messages").is_dir()
    assert settings["tensorflow"] is False
    assert settings["max_files"] == 20


def test_environment_selects_postgres_redis_and_media(tmp_path):
    settings = probe(
        tmp_path,
        DJANGO_SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://u:p@db:5432/clinic",
        REDIS_URL="redis://redis:6379/0",
        MEDIA_ROOT=str(tmp_path / "m"),
        DJANGO_ALLOWED_HOSTS="clinic.example.org",
        DATA_UPLOAD_MAX_NUMBER_FILES="8",
    )
    assert settings["db"] == "django.db.backends.postgresql"
    assert settings["broker"] == "redis://redis:6379/0"
    assert settings["media"] == str(tmp_path / "m")
    assert settings["debug"] is False
    assert settings["hosts"] == ["clinic.example.org"]
    assert settings["max_files"] == 8


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    setup = "import django; django.setup()"
    out = run_python(setup, settings="clinic_platform.settings", drop=("DJANGO_",), timeout=60)
    assert out.returncode != 0
    assert "DJANGO_SECRET_KEY" in out.stderr


TEST_PROBE = """
import json, django
django.setup()
from clinic_platform.celery import app
print(json.dumps({"broker": app.connection_for_write().as_uri(include_password=True)}))
"""


def _test_settings_broker(**env) -> str:
    drop = ("DJANGO_", "CELERY_", "REDIS_", "TEST_REDIS")
    return printed_json(run_python(TEST_PROBE, settings="clinic_platform.test_settings", drop=drop, **env))["broker"]


def test_the_suite_never_uses_a_shared_redis_database(tmp_path):
    """The tests consume what they publish: on Redis, never db 0 (a developer's stack, CI's)."""
    assert _test_settings_broker(REDIS_URL="redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/13"
    assert _test_settings_broker(REDIS_URL="redis://:pw@redis:6380") == "redis://:pw@redis:6380/13"
    assert _test_settings_broker(REDIS_URL="redis://127.0.0.1:6379/0", TEST_REDIS_DB="12").endswith(":6379/12")
    # An explicit broker (the e2e harness pins its worker's) is kept; no Redis: in memory.
    pinned = "redis://127.0.0.1:6379/15"
    assert _test_settings_broker(REDIS_URL="redis://127.0.0.1:6379/0", CELERY_BROKER_URL=pinned) == pinned
    assert _test_settings_broker().startswith("memory://")
