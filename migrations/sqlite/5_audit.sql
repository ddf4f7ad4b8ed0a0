-- The audit trail on the embedded store: the same `audit_events` as on PostgreSQL, chained per
-- tenant by the audit crate (SQLite has no SHA-256 in SQL; UNIQUE (tenant_id, seq) keeps each chain
-- linear). Append-only by trigger: no UPDATE, and DELETE only of events older than a year (the
-- retention purge, which records itself in the chain). Earlier authentication and authorization
-- records of the embedded store are not carried over: they cannot be chained in SQL here.

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    occurred_at TEXT NOT NULL,
    category TEXT NOT NULL CHECK (category IN ('authentication', 'authorization', 'membership', 'workspace',
        'webhook', 'llm_usage', 'action', 'data_sync', 'secret', 'privacy', 'retention')),
    action TEXT NOT NULL,
    actor_id TEXT,
    request_id TEXT,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (tenant_id, seq)
);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at DESC);
CREATE INDEX audit_events_tenant_category ON audit_events (tenant_id, category, seq DESC);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only (UPDATE refused)');
END;
CREATE TRIGGER audit_events_no_early_delete BEFORE DELETE ON audit_events
    WHEN julianday(OLD.occurred_at) >= julianday('now', '-365 days')
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only (DELETE refused)');
END;

DROP TABLE authz_failures;
DROP TABLE auth_events;
