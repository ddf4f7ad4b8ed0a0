-- Rampart PostgreSQL roles. Run once per cluster as a superuser (or a role with CREATEROLE):
--
--   psql -v ON_ERROR_STOP=1 -f deploy/postgres/bootstrap-roles.sql
--   psql -c "ALTER ROLE rampart_owner PASSWORD '...'" -c "ALTER ROLE rampart_app PASSWORD '...'"
--   psql -c "CREATE DATABASE rampart OWNER rampart_owner"
--
-- rampart_owner   owns the database and every table; used only by `rampart migrate`
--                 (database.migrate_url). Not a superuser, cannot bypass RLS.
-- rampart_runtime NOLOGIN group role that migrations grant table privileges to.
-- rampart_app     the login role the server uses (database.url): NOSUPERUSER NOBYPASSRLS, owns
--                 nothing, member of rampart_runtime. `rampart serve` refuses any other kind.
-- rampart_audit   NOLOGIN role of the audit trail's operators: reads every chain (`rampart audit
--                 verify`) and is the only role that may delete audit events, and only those past
--                 the one-year retention (`rampart audit purge`, which the database records).
--                 Granted to rampart_owner, used with SET ROLE; never to rampart_app.
-- rampart_keys    NOLOGIN role of the key operators (`rampart keys rotate|rewrap|retire|shred`):
--                 reads and replaces tenants' wrapped data keys and the sealed columns, nothing
--                 else. Granted to rampart_owner, used with SET ROLE; never to rampart_app.
--
-- Safe to run again: existing roles are left as they are, then their attributes are re-asserted.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rampart_owner') THEN
    CREATE ROLE rampart_owner LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rampart_runtime') THEN
    CREATE ROLE rampart_runtime NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rampart_app') THEN
    CREATE ROLE rampart_app LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rampart_audit') THEN
    CREATE ROLE rampart_audit NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rampart_keys') THEN
    CREATE ROLE rampart_keys NOLOGIN;
  END IF;
END
$$;

ALTER ROLE rampart_owner NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
ALTER ROLE rampart_runtime NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOLOGIN;
ALTER ROLE rampart_app NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT;
GRANT rampart_runtime TO rampart_app;
ALTER ROLE rampart_audit NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOLOGIN;
GRANT rampart_audit TO rampart_owner;
ALTER ROLE rampart_keys NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOLOGIN;
GRANT rampart_keys TO rampart_owner;
