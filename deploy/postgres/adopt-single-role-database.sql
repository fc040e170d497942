-- Moves a database made before the two roles (one role owned everything, e.g. the old compose
-- stack's `clinic` superuser) to the owner role of docs/database-roles.md: every table (with
-- the sequences of its columns), view, other sequence and function of the public schema.
-- Run after deploy/postgres/10-clinic-roles.sh, as a superuser, in the application's database:
--   psql -v ON_ERROR_STOP=1 -v owner=clinic_owner -d clinic -f adopt-single-role-database.sql
-- then migrate as the owner with DATABASE_RUNTIME_ROLE (it grants the runtime role).
-- (REASSIGN OWNED cannot do it: the old role is often the cluster's bootstrap superuser.)
-- Idempotent; tests/ops/test_postgres_roles.py runs it on a database migrated by one role.
SELECT format('ALTER TABLE public.%I OWNER TO %I', c.relname, :'owner')
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND c.relowner <> :'owner'::regrole
\gexec
SELECT format('ALTER %s public.%I OWNER TO %I', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
              c.relname, :'owner')
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('v', 'm') AND c.relowner <> :'owner'::regrole
\gexec
-- Sequences not tied to a column (those moved with their table above).
SELECT format('ALTER SEQUENCE public.%I OWNER TO %I', c.relname, :'owner')
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S' AND c.relowner <> :'owner'::regrole
   AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.deptype IN ('a', 'i'))
\gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'owner')
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> :'owner'::regrole
\gexec
