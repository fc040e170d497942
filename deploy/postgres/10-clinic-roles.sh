#!/bin/sh
# The database and its two roles (docs/database-roles.md), made by a PostgreSQL superuser:
# - CLINIC_DB_OWNER (clinic_owner) owns the database, its schema and (once migrated) every
#   table; only the migrate step connects as it;
# - CLINIC_DB_APP (clinic_app) owns nothing and may only connect: web, workers and beat use it,
#   and `migrate` (DATABASE_RUNTIME_ROLE) grants it its table rights, the audit table's
#   SELECT/INSERT only.
# docker-compose.yml mounts this file into the postgres image's /docker-entrypoint-initdb.d
# (run once, when the data volume is empty). Elsewhere (a managed server) run it as a superuser:
#   CLINIC_DB_OWNER_PASSWORD=... CLINIC_DB_APP_PASSWORD=... PGHOST=db.internal POSTGRES_USER=postgres \
#       sh deploy/postgres/10-clinic-roles.sh
# Idempotent: a second run creates nothing new and resets the two passwords. The passwords
# reach psql through its environment (\getenv), never its command line.
# tests/ops/test_postgres_roles.py runs it against a throwaway cluster, then migrates.
set -e
: "${CLINIC_DB_OWNER_PASSWORD:?set CLINIC_DB_OWNER_PASSWORD}"
: "${CLINIC_DB_APP_PASSWORD:?set CLINIC_DB_APP_PASSWORD}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v db="${CLINIC_DB_NAME:-clinic}" -v owner="${CLINIC_DB_OWNER:-clinic_owner}" \
    -v app="${CLINIC_DB_APP:-clinic_app}" <<'SQL'
\getenv owner_password CLINIC_DB_OWNER_PASSWORD
\getenv app_password CLINIC_DB_APP_PASSWORD
SELECT format('CREATE ROLE %I', :'owner') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner')
\gexec
SELECT format('CREATE ROLE %I', :'app') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app')
\gexec
-- Plain login roles: no superuser, no CREATEDB/CREATEROLE, no BYPASSRLS.
ALTER ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD :'owner_password';
ALTER ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD :'app_password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
ALTER DATABASE :"db" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app";
\connect :"db"
ALTER SCHEMA public OWNER TO :"owner";
-- The runtime role creates nothing (PostgreSQL 15+ already refuses PUBLIC; older ones did not).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
