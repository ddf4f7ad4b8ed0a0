-- Secrets at rest: tenants' data keys (wrapped by key-encryption keys that live outside the
-- database) and workspace connections to external providers, whose secret fields are stored only
-- as AES-256-GCM envelopes bound to their (tenant, table, column, row) — crates/crypto-vault.

-- One row per data key: a tenant's key for one purpose at one version. The newest version is
-- the active one; older versions only open values not yet re-encrypted (`rampart keys rewrap`)
-- and are deleted by `rampart keys retire`, which raises the minimum version that still opens.
-- Deleting a tenant's rows shreds its encrypted data; the workspace purge does it by cascade.
CREATE TABLE tenant_keys (
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    purpose text NOT NULL CHECK (purpose IN ('integration_tokens', 'storage_credentials', 'personal_data')),
    version integer NOT NULL CHECK (version > 0),
    -- The key-encryption key that wrapped it (an id derived from the key, never the key).
    kek_id text NOT NULL,
    key_ciphertext bytea NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, purpose, version)
);

CREATE TABLE connections (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider text NOT NULL CHECK (provider IN ('s3', 'r2', 'gcs', 'firebase', 'slack', 'google')),
    name text NOT NULL,
    -- Non-secret settings (bucket, region, account, project), JSON.
    config text NOT NULL,
    -- The secret fields as one JSON object, sealed; written, rotated, never read back by clients.
    secret_ciphertext bytea NOT NULL,
    -- The data key version of `secret_ciphertext` (also in its header), for re-encryption.
    ciphertext_version integer NOT NULL,
    -- What the list shows instead of the secret: its last characters, at most four.
    display_hint text NOT NULL,
    scopes text NOT NULL,
    created_by uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    rotated_at timestamptz NOT NULL,
    last_tested_at timestamptz,
    last_test_outcome text
);
CREATE INDEX connections_tenant ON connections (tenant_id, created_at);
CREATE INDEX connections_version ON connections (ciphertext_version);

ALTER TABLE tenant_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE connections FORCE ROW LEVEL SECURITY;

-- The server reads its tenant's wrapped keys and adds a first key; it never changes or deletes
-- one (rotation, re-wrapping, retirement and shredding are the operator's, below).
CREATE POLICY tenant_keys_select ON tenant_keys FOR SELECT TO rampart_runtime USING (tenant_id = app_tenant_id());
CREATE POLICY tenant_keys_insert ON tenant_keys FOR INSERT TO rampart_runtime WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY tenant_keys_update ON tenant_keys FOR UPDATE TO rampart_runtime USING (false);
CREATE POLICY tenant_keys_delete ON tenant_keys FOR DELETE TO rampart_runtime USING (false);

-- Connections: listed with connections.read, changed with connections.manage.
CREATE POLICY connections_select ON connections FOR SELECT TO rampart_runtime
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('connections.read') OR app_can('connections.manage')));
CREATE POLICY connections_insert ON connections FOR INSERT TO rampart_runtime
    WITH CHECK (tenant_id = app_tenant_id() AND (SELECT app_can('connections.manage')));
CREATE POLICY connections_update ON connections FOR UPDATE TO rampart_runtime
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('connections.manage')))
    WITH CHECK (tenant_id = app_tenant_id() AND (SELECT app_can('connections.manage')));
CREATE POLICY connections_delete ON connections FOR DELETE TO rampart_runtime
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('connections.manage')));

GRANT SELECT, INSERT ON tenant_keys TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON connections TO rampart_runtime;

-- The key operators' role (deploy/postgres/bootstrap-roles.sql): rotates, re-wraps, retires and
-- shreds data keys across tenants and re-encrypts sealed columns. It may change a sealed value
-- and its version, nothing else of a connection, and records its work in the platform chain.
CREATE POLICY tenant_keys_keys ON tenant_keys FOR ALL TO rampart_keys USING (true) WITH CHECK (true);
CREATE POLICY connections_keys_select ON connections FOR SELECT TO rampart_keys USING (true);
CREATE POLICY connections_keys_update ON connections FOR UPDATE TO rampart_keys USING (true) WITH CHECK (true);
GRANT USAGE ON SCHEMA public TO rampart_keys;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_keys TO rampart_keys;
GRANT SELECT (id, tenant_id, provider, secret_ciphertext, ciphertext_version) ON connections TO rampart_keys;
GRANT UPDATE (secret_ciphertext, ciphertext_version) ON connections TO rampart_keys;
GRANT INSERT ON audit_events TO rampart_keys;
