"""WSGI entry point (gunicorn clinic_platform.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_platform.settings")

application = get_wsgi_application()
