-- Outbound webhooks: endpoints (https URL, subscribed event types, sealed Standard Webhooks
-- secrets), their delivery health, each event's delivery and every attempt. SQLite has no
-- row-level security: the webhooks crate's queries, which always take the tenant, are the only
-- isolation here.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    event_types TEXT NOT NULL,
    secrets_ciphertext BLOB NOT NULL,
    ciphertext_version INTEGER NOT NULL,
    overlap_ends TEXT NOT NULL DEFAULT '[]',
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

CREATE TABLE webhook_endpoint_health (
    endpoint_id TEXT PRIMARY KEY REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    failing_since TEXT,
    last_success_at TEXT,
    disabled_at TEXT,
    disabled_reason TEXT
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_attempt_at TEXT,
    delivered_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (tenant_id, endpoint_id, created_at);

CREATE TABLE webhook_attempts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    cause TEXT NOT NULL CHECK (cause IN ('scheduled', 'replay')),
    started_at TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    response_status INTEGER,
    outcome TEXT NOT NULL,
    UNIQUE (delivery_id, attempt)
);
