-- Inbound webhooks: sources per workspace (a signing scheme, settings, and secrets sealed with the
-- workspace's data key), the persistent inbox that makes every accepted event unique per source,
-- and per-source counters of accepted deliveries and signature failures.
CREATE TABLE webhook_sources (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('stripe', 'standard', 'twilio', 'generic')),
    name text NOT NULL,
    settings text NOT NULL,
    -- A JSON list of secrets, newest first, sealed; NULL until configured (deliveries then fail
    -- closed with 500).
    secrets_ciphertext bytea,
    ciphertext_version integer,
    sealed_count integer NOT NULL DEFAULT 0,
    created_by uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX webhook_sources_tenant ON webhook_sources (tenant_id, created_at);

CREATE TABLE webhook_inbox (
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    source_id uuid NOT NULL REFERENCES webhook_sources (id) ON DELETE CASCADE,
    event_id text NOT NULL,
    event_type text,
    body_sha256 text NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (source_id, event_id)
);

CREATE TABLE webhook_source_stats (
    source_id uuid PRIMARY KEY REFERENCES webhook_sources (id) ON DELETE CASCADE,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    accepted bigint NOT NULL DEFAULT 0,
    signature_failures bigint NOT NULL DEFAULT 0,
    last_failure_at timestamptz
);

ALTER TABLE webhook_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_sources FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_inbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_inbox FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_source_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_source_stats FORCE ROW LEVEL SECURITY;

-- Sources are read in their tenant's context (a delivery has no principal) and changed with
-- webhooks.manage.
CREATE POLICY webhook_sources_select ON webhook_sources FOR SELECT TO rampart_runtime USING (tenant_id = app_tenant_id());
CREATE POLICY webhook_sources_insert ON webhook_sources FOR INSERT TO rampart_runtime
    WITH CHECK (tenant_id = app_tenant_id() AND (SELECT app_can('webhooks.manage')));
CREATE POLICY webhook_sources_update ON webhook_sources FOR UPDATE TO rampart_runtime
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('webhooks.manage')))
    WITH CHECK (tenant_id = app_tenant_id() AND (SELECT app_can('webhooks.manage')));
CREATE POLICY webhook_sources_delete ON webhook_sources FOR DELETE TO rampart_runtime
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('webhooks.manage')));
-- The inbox only grows (a source's deletion removes its events by cascade), and only for a source
-- of the same tenant: the foreign key alone would let one tenant's transaction claim another
-- tenant's event ids.
CREATE POLICY webhook_inbox_select ON webhook_inbox FOR SELECT TO rampart_runtime USING (tenant_id = app_tenant_id());
CREATE POLICY webhook_inbox_insert ON webhook_inbox FOR INSERT TO rampart_runtime
    WITH CHECK (tenant_id = app_tenant_id()
                AND EXISTS (SELECT 1 FROM webhook_sources s WHERE s.id = source_id AND s.tenant_id = app_tenant_id()));
CREATE POLICY webhook_inbox_update ON webhook_inbox FOR UPDATE TO rampart_runtime USING (false);
CREATE POLICY webhook_inbox_delete ON webhook_inbox FOR DELETE TO rampart_runtime USING (false);
CREATE POLICY webhook_source_stats_select ON webhook_source_stats FOR SELECT TO rampart_runtime USING (tenant_id = app_tenant_id());
CREATE POLICY webhook_source_stats_insert ON webhook_source_stats FOR INSERT TO rampart_runtime
    WITH CHECK (tenant_id = app_tenant_id()
                AND EXISTS (SELECT 1 FROM webhook_sources s WHERE s.id = source_id AND s.tenant_id = app_tenant_id()));
CREATE POLICY webhook_source_stats_update ON webhook_source_stats FOR UPDATE TO rampart_runtime
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY webhook_source_stats_delete ON webhook_source_stats FOR DELETE TO rampart_runtime USING (false);

GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_sources TO rampart_runtime;
GRANT SELECT, INSERT ON webhook_inbox TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE ON webhook_source_stats TO rampart_runtime;

-- Key maintenance re-encrypts the sealed secrets like every other sealed column.
CREATE POLICY webhook_sources_keys_select ON webhook_sources FOR SELECT TO rampart_keys USING (true);
CREATE POLICY webhook_sources_keys_update ON webhook_sources FOR UPDATE TO rampart_keys USING (true) WITH CHECK (true);
GRANT SELECT (id, tenant_id, secrets_ciphertext, ciphertext_version) ON webhook_sources TO rampart_keys;
GRANT UPDATE (secrets_ciphertext, ciphertext_version) ON webhook_sources TO rampart_keys;
