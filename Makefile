# Local run, tests and lint. Every target sets up .venv first, so a fresh clone needs only
# Python 3.11 with venv for `make run`; `make test` also installs the system packages of
# requirements/system.txt and starts its own services (see docs/operations.md).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
# Reinstall only when a requirements file changes: the stamp is newer than them otherwise.
STAMP  := $(VENV)/.requirements.stamp
SYSTEM_PACKAGES := requirements/system.txt
REQUIREMENTS := requirements.txt $(filter-out $(SYSTEM_PACKAGES),$(wildcard requirements/*.txt))
# `make test PYTEST_ARGS="tests/apps/test_reports.py -x"`: only these, one pass, same set-up.
PYTEST_ARGS ?=

.PHONY: venv test-setup run test test-fast test-e2e-s3 lint bench clean-local

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

# What the tests need, in an order that stops before anything is half-done: the system packages
# first (installed as root, else one message with the apt-get command and exit 2), then .venv.
# Each part says what it did and how long it took; a second run finds both in place (seconds).
test-setup:
	@$(PYTHON) scripts/system_packages.py ensure
	@if $(MAKE) --no-print-directory -q $(STAMP) 2>/dev/null; then echo "== python env: $(VENV) up to date"; \
	else start=$$(date +%s); $(MAKE) --no-print-directory $(STAMP) || exit 1; \
	     echo "== python env: installed requirements.txt into $(VENV) ($$(( $$(date +%s) - start )) s)"; fi

# The whole suite (unit, ops, end-to-end with real workers, browser) on a PostgreSQL cluster and
# a redis-server started on free ports for this run, then the end-to-end suite again with media
# in a SeaweedFS S3 bucket; services stopped afterwards (scripts/run_suite.py). CI runs exactly this.
test: test-setup
	@$(BIN)/python scripts/run_suite.py $(PYTEST_ARGS)

# Everything but the slow end-to-end tests, for a quick loop while editing.
test-fast: test-setup
	@$(BIN)/python scripts/run_suite.py --ignore=tests/e2e $(PYTEST_ARGS)

# The S3 pass alone: the end-to-end suite with media in a real S3 bucket (the one
# S3_ENDPOINT_URL/S3_BUCKET name, or a SeaweedFS started for the run).
test-e2e-s3: test-setup
	@$(BIN)/python scripts/run_suite.py --s3 $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: venv
	$(BIN)/python bench/history_page.py
	$(BIN)/python bench/queue_throughput.py

clean-local:
	rm -rf var media db.sqlite3
