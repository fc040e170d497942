"""deploy/postgres/10-clinic-roles.sh, the db service's first-start script (docker-compose.yml),
run for real against a throwaway PostgreSQL cluster with the db service's own environment,
then `migrate` as the compose migrate service runs it (the owner, DATABASE_RUNTIME_ROLE): the
runtime role that web, workers and beat use cannot change or empty the audit table, owns
nothing and creates nothing, while it reads and writes the application's tables."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.testkit.processes import postgres_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "postgres" / "10-clinic-roles.sh"
ADOPT = ROOT / "deploy" / "postgres" / "adopt-single-role-database.sql"
pytestmark = pytest.mark.skipif(
    not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("psql") is None,
    reason="PostgreSQL (server and psql) not installed: requirements/system.txt",
)
# Quotes, a backslash and a semicolon: the passwords must arrive intact and never as SQL.
PASSWORDS = {"CLINIC_DB_OWNER_PASSWORD": "own'er\"; DROP ROLE x; \\", "CLINIC_DB_APP_PASSWORD": "app 'pw' $1"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def _make_roles(address, db_env: dict) -> None:
    """The script run twice (it is idempotent) as the image would run it: the db service's
    variables, the cluster's superuser as POSTGRES_USER."""
    env = {
        **os.environ,
        **{k: v for k, v in db_env.items() if k in ("CLINIC_DB_NAME", "CLINIC_DB_OWNER", "CLINIC_DB_APP")},
        **PASSWORDS,
        "POSTGRES_USER": address.username,
        "PGHOST": address.hostname,
        "PGPORT": str(address.port),
    }
    for _ in range(2):
        done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict]:
    db_env = _compose()["db"]["environment"]
    with postgres_server("scratch") as url:
        address = urlsplit(url)
        _make_roles(address, db_env)
        yield {"host": address.hostname, "port": address.port, "superuser": address.username, **db_env}


def _user(compose_url: str) -> str:
    """The user of a compose DATABASE_URL (its password is a ${VAR:?message} expression)."""
    return compose_url.removeprefix("postgres://").split(":", 1)[0]


def _connect(cluster: dict, user: str, dbname: str):
    import psycopg

    return psycopg.connect(host=cluster["host"], port=cluster["port"], user=user, dbname=dbname, autocommit=True)


def _scram_matches(verifier: str, password: str) -> bool:
    """PostgreSQL's SCRAM-SHA-256 verifier (RFC 5802/7677) against a password (ASCII: SASLprep
    leaves it as it is)."""
    method, iterations_salt, keys = verifier.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key, server_key = keys.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return method == "SCRAM-SHA-256" and base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key \
        and base64.b64encode(hmac.new(salted, b"Server Key", "sha256").digest()).decode() == server_key  # fmt: skip


def test_the_script_makes_two_plain_roles_with_their_passwords_and_the_owners_database(cluster):
    owner, app, name = cluster["CLINIC_DB_OWNER"], cluster["CLINIC_DB_APP"], cluster["CLINIC_DB_NAME"]
    with _connect(cluster, cluster["superuser"], "postgres") as admin:
        rows = admin.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolcanlogin, rolpassword"
            " FROM pg_authid WHERE rolname = ANY(%s)", [[owner, app]]
        )  # fmt: skip
        roles = {row[0]: row[1:] for row in rows}
        assert set(roles) == {owner, app}
        expected = {owner: PASSWORDS["CLINIC_DB_OWNER_PASSWORD"], app: PASSWORDS["CLINIC_DB_APP_PASSWORD"]}
        for role, password in expected.items():
            assert roles[role][:5] == (False, False, False, False, True), role
            assert _scram_matches(roles[role][5], password), role
        assert not _scram_matches(roles[app][5], "something else")
        assert admin.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'x'").fetchone() == (0,)
        query = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s"
        (db_owner,) = admin.execute(query, [name]).fetchone()
        assert db_owner == owner


def _migrate(cluster: dict, user: str, runtime_role: str = "") -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))},
        "DJANGO_SETTINGS_MODULE": "clinic_platform.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": f"postgres://{user}@{cluster['host']}:{cluster['port']}/{cluster['CLINIC_DB_NAME']}",
        "DATABASE_RUNTIME_ROLE": runtime_role,
    }
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def migrated(cluster) -> dict:
    """`manage.py migrate` with the compose migrate service's database variables."""
    migrate_env = _compose()["migrate"]["environment"]
    owner = _user(migrate_env["DATABASE_URL"])
    assert owner == cluster["CLINIC_DB_OWNER"]
    _migrate(cluster, owner, migrate_env["DATABASE_RUNTIME_ROLE"])
    return cluster


def _assert_runtime_role_cannot_change_the_audit_trail(cluster: dict, events_before: int = 0) -> None:
    import psycopg

    app = _user(_compose()["web"]["environment"]["DATABASE_URL"])
    assert app == cluster["CLINIC_DB_APP"]
    with _connect(cluster, app, cluster["CLINIC_DB_NAME"]) as runtime:
        runtime.execute(
            "INSERT INTO audit_auditevent (at, actor_username, action, object_type, object_id, outcome, detail)"
            " VALUES (now(), 'x', 'view', 'case', '1', 'success', '')"
        )
        assert runtime.execute("SELECT count(*) FROM audit_auditevent").fetchone() == (events_before + 1,)
        for sql in ("UPDATE audit_auditevent SET detail = 'tampered'", "DELETE FROM audit_auditevent",
                    "TRUNCATE audit_auditevent", "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
                    "CREATE TABLE sneaky (id int)"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                runtime.execute(sql)
        assert runtime.execute("SELECT DISTINCT detail FROM audit_auditevent").fetchall() == [("",)]
        runtime.execute("INSERT INTO accounts_clinic (name, created_at) VALUES ('Runtime Clinic', now())")
        runtime.execute("DELETE FROM accounts_clinic WHERE name = 'Runtime Clinic'")
        owners = {row[0] for row in runtime.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        assert owners == {cluster["CLINIC_DB_OWNER"]}
        functions = runtime.execute(
            "SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        ).fetchall()
        assert functions == [(cluster["CLINIC_DB_OWNER"],)]  # the append-only trigger's function


def test_the_runtime_role_of_web_and_workers_cannot_change_the_audit_trail(migrated):
    _assert_runtime_role_cannot_change_the_audit_trail(migrated)


def test_a_database_made_with_one_role_moves_to_the_two():
    """The old compose layout (superuser `clinic` made the database and migrated it) with an
    audit event in it: the role script, the adoption script, migrate as the owner; then the same
    refusals, the event kept."""
    db_env = _compose()["db"]["environment"]
    migrate_env = _compose()["migrate"]["environment"]
    with postgres_server("clinic") as url:
        address = urlsplit(url)
        cluster = {"host": address.hostname, "port": address.port, "superuser": address.username, **db_env}
        assert address.path == f"/{db_env['CLINIC_DB_NAME']}"  # the old stack's database, same name
        _migrate(cluster, address.username)
        with _connect(cluster, address.username, "clinic") as old:
            old.execute(
                "INSERT INTO audit_auditevent (at, actor_username, action, object_type, object_id, outcome, detail)"
                " VALUES (now(), 'before', 'view', 'case', '1', 'success', '')"
            )
        _make_roles(address, db_env)
        for _ in range(2):
            done = subprocess.run(
                [shutil.which("psql") or "psql", "-v", "ON_ERROR_STOP=1", "--no-psqlrc",
                 "-h", address.hostname, "-p", str(address.port),
                 "-U", address.username, "-d", "clinic", "-v", f"owner={db_env['CLINIC_DB_OWNER']}", "-f", str(ADOPT)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        _migrate(cluster, _user(migrate_env["DATABASE_URL"]), migrate_env["DATABASE_RUNTIME_ROLE"])
        _assert_runtime_role_cannot_change_the_audit_trail(cluster, events_before=1)
