-- Foundation. SQLite has no roles or row-level security: the application layer's tenant scoping
-- is the only isolation on this backend, and the trust report says so.
-- The migration history table is created by the migrator itself; this file marks version 1.
SELECT 1;
