# One image for web, workers and beat; docker-compose.yml picks the command.
# The GPU worker builds it with TENSORFLOW="tensorflow[and-cuda]==2.21.0" (same version as the
# tensorflow-cpu pin in requirements.txt), everything else with the CPU build.
FROM python:3.11-slim-bookworm

ARG TENSORFLOW="tensorflow-cpu==2.21.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MEDIA_ROOT=/srv/media \
    STATIC_ROOT=/srv/static

WORKDIR /app
# The system packages: requirements/system.txt's lines not marked "test:" (OpenCV's libglib,
# libpq, WeasyPrint's pango/harfbuzz and a font, ...), the one list make test and CI read too.
COPY requirements/system.txt requirements/
COPY scripts/system_packages.py scripts/
RUN apt-get update \
 && apt-get install -y --no-install-recommends $(python scripts/system_packages.py list --image) \
 && rm -rf /var/lib/apt/lists/*

COPY requirements.txt ./
COPY requirements/base.txt requirements/
# Production packages only (no test tools, no training): requirements/base.txt, plus any package
# line added to requirements.txt itself; the TensorFlow line is swapped for the build-arg one.
RUN { grep -v '^tensorflow' requirements/base.txt; grep -Ev '^\s*(#|-r|$)' requirements.txt || true; } \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt "${TENSORFLOW}"

COPY . .
RUN useradd --system --uid 1000 --home /app clinic \
 && mkdir -p /srv/media /srv/static \
 && DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
 && chown -R clinic /srv/media /srv/static
USER clinic

EXPOSE 8000
CMD ["gunicorn", "clinic_platform.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60", "--access-logfile", "-"]
