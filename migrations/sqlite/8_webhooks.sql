-- Inbound webhooks: sources per workspace, the persistent inbox (unique per source and event id)
-- and per-source counters. SQLite has no row-level security: the webhooks crate's queries, which
-- always take the tenant, are the only isolation here.
CREATE TABLE webhook_sources (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('stripe', 'standard', 'twilio', 'generic')),
    name TEXT NOT NULL,
    settings TEXT NOT NULL,
    secrets_ciphertext BLOB,
    ciphertext_version INTEGER,
    sealed_count INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX webhook_sources_tenant ON webhook_sources (tenant_id, created_at);

CREATE TABLE webhook_inbox (
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    source_id TEXT NOT NULL REFERENCES webhook_sources (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    event_type TEXT,
    body_sha256 TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (source_id, event_id)
);

CREATE TABLE webhook_source_stats (
    source_id TEXT PRIMARY KEY REFERENCES webhook_sources (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    accepted INTEGER NOT NULL DEFAULT 0,
    signature_failures INTEGER NOT NULL DEFAULT 0,
    last_failure_at TEXT
);
