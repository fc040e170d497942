"""The Celery tasks' tests run on the platform-core fixtures (two clinics, the captured broker, a
media folder per test): the same ones as tests/apps, imported from its conftest."""

from tests.apps.conftest import _fresh_throttles, broker, maintenance_broker, media_root, north, south  # noqa: F401
