"""SQLite (`make run`) refuses UPDATE and DELETE on audit events too, whatever the client: the
ORM already refuses, these triggers cover raw SQL and the sqlite3 shell. PostgreSQL has its
trigger (0002) and, in production, a runtime role that may only INSERT and SELECT (the grants
are applied after every migrate: apps/audit/db_roles.py)."""

from django.db import migrations

from apps.audit.db_roles import SQLITE_CREATE, SQLITE_DROP


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_CREATE:
            schema_editor.execute(statement, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_DROP:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_refused_access_action")]

    operations = [migrations.RunPython(forwards, backwards)]
