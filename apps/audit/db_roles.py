"""The audit table is append-only in the database itself, not only in the ORM.

PostgreSQL (production): two roles (docs/database-roles.md).
- The **owner** role runs `manage.py migrate` and owns every table.
- The **runtime** role (`DATABASE_URL` of the web, workers and beat) owns nothing. After every
  migrate run as the owner with `DATABASE_RUNTIME_ROLE` set, `grant_runtime_role` gives it
  SELECT/INSERT/UPDATE/DELETE on the application's tables and their sequences, and on
  `audit_auditevent` only SELECT and INSERT: it cannot UPDATE, DELETE or TRUNCATE an event, nor
  ALTER the table (DISABLE TRIGGER needs ownership). The owner is refused UPDATE/DELETE by
  the trigger of migration 0002.

SQLite (`make run`): triggers refuse UPDATE and DELETE (migration 0004). The test suite's
flush (DELETE FROM every table) drops and recreates them around itself (`sqlite_flush_sql`).
"""

from __future__ import annotations

from typing import Any

AUDIT_TABLE = "audit_auditevent"

SQLITE_CREATE = [
    f"""CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON {AUDIT_TABLE}
        BEGIN SELECT RAISE(ABORT, 'audit events are append-only (UPDATE refused)'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON {AUDIT_TABLE}
        BEGIN SELECT RAISE(ABORT, 'audit events are append-only (DELETE refused)'); END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS audit_event_no_update",
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
]


def sqlite_flush_sql(statements: list[str]) -> list[str]:
    """A test flush on SQLite: the triggers step aside for it and come back after."""
    if not any(AUDIT_TABLE in statement for statement in statements):
        return statements
    return [*SQLITE_DROP, *statements, *SQLITE_CREATE]


def runtime_role() -> str:
    from django.conf import settings

    return settings.DATABASE_RUNTIME_ROLE


def grant_runtime_role(connection: Any, role: str) -> None:
    """(PostgreSQL, as the owner) What the runtime role may do: everything on the application's
    tables except changing the audit trail. Idempotent; run after every migrate."""
    quote = connection.ops.quote_name
    role_name = quote(role)
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        tables = [row[0] for row in cursor.fetchall()]
        for table in tables:
            if table == AUDIT_TABLE:
                cursor.execute(f"REVOKE ALL ON {quote(table)} FROM {role_name}")
                cursor.execute(f"GRANT SELECT, INSERT ON {quote(table)} TO {role_name}")
            else:
                cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {quote(table)} TO {role_name}")
        cursor.execute(
            "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = current_schema()"
        )
        for (sequence,) in cursor.fetchall():
            cursor.execute(f"GRANT USAGE, SELECT ON SEQUENCE {quote(sequence)} TO {role_name}")
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
        cursor.execute(f"GRANT USAGE ON SCHEMA {quote(schema)} TO {role_name}")
        cursor.execute(f"REVOKE CREATE ON SCHEMA {quote(schema)} FROM {role_name}")


def grant_after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """post_migrate: re-apply the runtime role's grants (new tables included); on SQLite make
    sure the triggers exist (a later migration that remakes the table would drop them)."""
    from django.db import connections

    role = runtime_role()
    connection = connections[using]
    if role and connection.vendor == "postgresql":
        grant_runtime_role(connection, role)
    if connection.vendor == "sqlite" and AUDIT_TABLE in connection.introspection.table_names():
        with connection.cursor() as cursor:
            for statement in SQLITE_CREATE:
                cursor.execute(statement)
