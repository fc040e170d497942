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

# libglib: OpenCV's headless wheel links it; libpq: for psycopg if its binary wheel is absent.
# pango, harfbuzz-subset and a font: WeasyPrint's PDF reports (apps/cases/reports.py).
# tesseract-ocr(-eng): the worker's burnt-in text check (workers/burnt_text.py).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libglib2.0-0 libpq5 \
    libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    tesseract-ocr tesseract-ocr-eng \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
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
