-- A user's platform level (4_rbac.sql) is raised only by an operator, as the owner role, never by
-- the server: the runtime role may insert users and change their other columns, but it cannot
-- write `platform_level`, so a flaw in the application that lets SQL through as `rampart_app`
-- still cannot make anyone a platform administrator (OWASP ASVS 5.0 V8.2.1: function-level
-- access only for consumers with explicit permissions). New users get the column's default.
REVOKE INSERT, UPDATE ON users FROM rampart_runtime;
GRANT INSERT (id, email, email_verified_at, password_hash, status, failed_signins, lockouts, locked_until,
              created_at, updated_at) ON users TO rampart_runtime;
GRANT UPDATE (email, email_verified_at, password_hash, status, failed_signins, lockouts, locked_until, updated_at)
    ON users TO rampart_runtime;
