"""Issue 15 item 5: on PostgreSQL the application's runtime role cannot change the audit trail.

A throwaway PostgreSQL cluster (initdb/pg_ctl from /usr/lib/postgresql/*/bin, a free port, a
temp folder) gets the two roles of docs/database-roles.md; `manage.py migrate` runs as the
owner with DATABASE_RUNTIME_ROLE set, then the runtime role (what the web, workers and beat
use) tries UPDATE, DELETE, TRUNCATE and ALTER TABLE ... DISABLE TRIGGER on audit events: all
refused, while INSERT and SELECT, and its work on the other tables, succeed. Skipped only
where the PostgreSQL server binaries are not installed (CI has them)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testkit.processes import free_port

BIN_DIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
PG_BIN = next((Path(d) for d in BIN_DIRS if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists()), None)
pytestmark = pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL server binaries (initdb, pg_ctl) not installed")
REPO = Path(__file__).resolve().parents[2]


def _as_cluster_user(argv: list[str], folder: Path) -> list[str]:
    # initdb refuses to run as root: run the server as the `postgres` account then.
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict]:
    # Its own folder under /tmp (pytest's are private to the user: the postgres account could
    # not reach them when the suite runs as root).
    folder = Path(tempfile.mkdtemp(prefix="clinic-pg-"))
    os.chmod(folder, 0o755)  # noqa: S103 (the postgres account must reach it; nothing secret)
    data, port = folder / "data", free_port()
    superuser = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    subprocess.run(
        _as_cluster_user(
            [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", superuser, "--no-sync"], folder
        ),
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        _as_cluster_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
                          f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], folder),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield {"host": "127.0.0.1", "port": port, "superuser": superuser}
    finally:
        subprocess.run(
            _as_cluster_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], folder),
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def _connect(cluster: dict, user: str, dbname: str = "clinic"):
    import psycopg

    return psycopg.connect(host=cluster["host"], port=cluster["port"], user=user, dbname=dbname, autocommit=True)


@pytest.fixture(scope="module")
def migrated(cluster) -> dict:
    """The deploy steps of docs/database-roles.md, then migrate as the owner."""
    with _connect(cluster, cluster["superuser"], "postgres") as admin:
        admin.execute("CREATE ROLE clinic_owner LOGIN")
        admin.execute("CREATE ROLE clinic_app LOGIN")
        admin.execute("CREATE DATABASE clinic OWNER clinic_owner")
    with _connect(cluster, cluster["superuser"]) as admin:
        admin.execute("ALTER SCHEMA public OWNER TO clinic_owner")
        admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    host = cluster["host"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "clinic_platform.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": f"postgres://clinic_owner@{host}:{cluster['port']}/clinic",
        "DATABASE_RUNTIME_ROLE": "clinic_app",
    }
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return cluster


def test_runtime_role_may_only_insert_and_select_audit_events(migrated):
    import psycopg

    with _connect(migrated, "clinic_app") as app:
        (event_id,) = app.execute(
            "INSERT INTO audit_auditevent (at, actor_username, action, object_type, object_id, outcome, detail)"
            " VALUES (now(), 'x', 'view', 'case', '1', 'success', '') RETURNING id"
        ).fetchone()
        assert app.execute("SELECT count(*) FROM audit_auditevent").fetchone() == (1,)
        refused = {
            "UPDATE": "UPDATE audit_auditevent SET detail = 'tampered'",
            "DELETE": "DELETE FROM audit_auditevent",
            "TRUNCATE": "TRUNCATE audit_auditevent",
            "DISABLE TRIGGER": "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only",
            "DROP TRIGGER": "DROP TRIGGER audit_event_append_only ON audit_auditevent",
            "DROP TABLE": "DROP TABLE audit_auditevent",
        }
        for what, sql in refused.items():
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"permission denied|must be owner"):
                app.execute(sql)
            assert what
        # A GRANT to itself is a no-op (PostgreSQL only warns): still refused afterwards.
        app.execute("GRANT UPDATE ON audit_auditevent TO clinic_app")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute(refused["UPDATE"])
        assert app.execute("SELECT detail FROM audit_auditevent WHERE id = %s", [event_id]).fetchone() == ("",)
        # The rest of the application works as that role.
        app.execute("INSERT INTO accounts_clinic (name, created_at) VALUES ('Runtime Clinic', now())")
        app.execute("UPDATE accounts_clinic SET name = 'Renamed' WHERE name = 'Runtime Clinic'")
        app.execute("DELETE FROM accounts_clinic WHERE name = 'Renamed'")
        # It owns nothing: no table of its own.
        assert app.execute("SELECT count(*) FROM pg_tables WHERE tableowner = 'clinic_app'").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("CREATE TABLE sneaky (id int)")


def test_the_owner_is_refused_by_the_trigger(migrated):
    import psycopg

    with _connect(migrated, "clinic_owner") as owner:
        owner.execute(
            "INSERT INTO audit_auditevent (at, actor_username, action, object_type, object_id, outcome, detail)"
            " VALUES (now(), 'y', 'view', 'case', '2', 'success', '')"
        )
        for sql in ("UPDATE audit_auditevent SET detail = 'x'", "DELETE FROM audit_auditevent"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                owner.execute(sql)
