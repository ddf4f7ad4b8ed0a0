-- API keys: per workspace, with a name, scopes, an optional expiry and their own request caps;
-- only the key's keyed hash is stored. SQLite has no row-level security: the auth crate's
-- queries, which always take the tenant, are the only isolation here.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    per_minute INTEGER NOT NULL CHECK (per_minute > 0),
    per_month INTEGER NOT NULL CHECK (per_month > 0),
    created_by TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    last_used_at TEXT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TRIGGER api_keys_stay_revoked BEFORE UPDATE OF revoked_at ON api_keys
    WHEN OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS NOT OLD.revoked_at
BEGIN
    SELECT RAISE(ABORT, 'a revoked API key stays revoked');
END;
