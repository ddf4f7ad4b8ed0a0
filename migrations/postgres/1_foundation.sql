-- Foundation: lock the public schema down and give the runtime group role only what it needs.
-- Runs as the owner role. The roles themselves are created once by an administrator
-- (deploy/postgres/bootstrap-roles.sql); this migration fails if `rampart_runtime` is missing.

-- PostgreSQL 15 already removes CREATE on `public` from PUBLIC; older servers did not.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO rampart_runtime;

-- The runtime role reads the schema version for readiness; it may not change it.
REVOKE ALL ON rampart_migrations FROM PUBLIC;
GRANT SELECT ON rampart_migrations TO rampart_runtime;
