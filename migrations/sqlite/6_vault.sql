-- Secrets at rest: tenants' data keys (wrapped by key-encryption keys outside the database) and
-- workspace connections whose secret fields are stored only as AES-256-GCM envelopes. SQLite
-- has no row-level security: the tenancy crate's queries are the only isolation here.

CREATE TABLE tenant_keys (
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL CHECK (purpose IN ('integration_tokens', 'storage_credentials', 'personal_data')),
    version INTEGER NOT NULL CHECK (version > 0),
    kek_id TEXT NOT NULL,
    key_ciphertext BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, purpose, version)
);

CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider TEXT NOT NULL CHECK (provider IN ('s3', 'r2', 'gcs', 'firebase', 'slack', 'google')),
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    secret_ciphertext BLOB NOT NULL,
    ciphertext_version INTEGER NOT NULL,
    display_hint TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    rotated_at TEXT NOT NULL,
    last_tested_at TEXT,
    last_test_outcome TEXT
);
CREATE INDEX connections_tenant ON connections (tenant_id, created_at);
CREATE INDEX connections_version ON connections (ciphertext_version);
