-- Outbound webhooks: a workspace's endpoints (an https URL, the event types it subscribes to and
-- its Standard Webhooks signing secrets, sealed with the workspace's data key), each event's
-- delivery to each subscribed endpoint, and every attempt at it. Deliveries are sent by outbox
-- actions (`scheduled_actions`), one per attempt.
CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    url text NOT NULL,
    description text NOT NULL,
    -- A JSON list of event types, or ["*"] for every type.
    event_types text NOT NULL,
    -- A JSON list of {secret, expires_at}, newest first, sealed: a rotated-out secret keeps
    -- signing until its expiry.
    secrets_ciphertext bytea NOT NULL,
    ciphertext_version integer NOT NULL,
    -- When each rotated-out secret stops signing (a JSON list, not secret): listings count the
    -- signing secrets without opening them.
    overlap_ends text NOT NULL DEFAULT '[]',
    created_by uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

-- The delivery side's view of an endpoint: failures in a row, and whether it was disabled (by
-- the delivery worker after a delivery failed its last attempt with no success since, or by an
-- administrator).
CREATE TABLE webhook_endpoint_health (
    endpoint_id uuid PRIMARY KEY REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    consecutive_failures integer NOT NULL DEFAULT 0,
    failing_since timestamptz,
    last_success_at timestamptz,
    disabled_at timestamptz,
    disabled_reason text
);

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_type text NOT NULL,
    payload text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'skipped')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_attempt_at timestamptz,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (tenant_id, endpoint_id, created_at);

CREATE TABLE webhook_attempts (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    cause text NOT NULL CHECK (cause IN ('scheduled', 'replay')),
    started_at timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    response_status integer,
    -- `ok`, or a stable code: `http_status`, `egress_timeout`, `egress_forbidden_address`, …
    outcome text NOT NULL,
    UNIQUE (delivery_id, attempt)
);

ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoints FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoint_health ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoint_health FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts FORCE ROW LEVEL SECURITY;

-- Endpoints are read in their tenant's context (by the delivery worker too) and changed with
-- webhooks.manage.
CREATE POLICY webhook_endpoints_select ON webhook_endpoints FOR SELECT TO rampart_runtime USING (tenant_id = app_tenant_id());
CREATE POLICY webhook_endpoints_insert ON webhook_endpoints FOR INSERT TO rampart_runtime
    WITH CHECK (tenant_id = app_tenant_id() AND (SELECT app_can('webhooks.manage')));
CREATE POLICY webhook_endpoints_update ON webhook_endpoints FOR UPDATE TO rampart_runtime
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('webhooks.manage')))
    WITH CHECK (tenant_id = app_tenant_id() AND (SELECT app_can('webhooks.manage')));
CREATE POLICY webhook_endpoints_delete ON webhook_endpoints FOR DELETE TO rampart_runtime
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('webhooks.manage')));

-- Health, deliveries and attempts are written by whoever causes them in the tenant (an event is
-- emitted by any member's change; the worker records outcomes), only for an endpoint or delivery
-- of the same tenant; attempts are never changed, deliveries never deleted but by cascade.
CREATE POLICY webhook_endpoint_health_select ON webhook_endpoint_health FOR SELECT TO rampart_runtime USING (tenant_id = app_tenant_id());
CREATE POLICY webhook_endpoint_health_insert ON webhook_endpoint_health FOR INSERT TO rampart_runtime
    WITH CHECK (tenant_id = app_tenant_id()
                AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = endpoint_id AND e.tenant_id = app_tenant_id()));
CREATE POLICY webhook_endpoint_health_update ON webhook_endpoint_health FOR UPDATE TO rampart_runtime
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY webhook_endpoint_health_delete ON webhook_endpoint_health FOR DELETE TO rampart_runtime USING (false);

CREATE POLICY webhook_deliveries_select ON webhook_deliveries FOR SELECT TO rampart_runtime USING (tenant_id = app_tenant_id());
CREATE POLICY webhook_deliveries_insert ON webhook_deliveries FOR INSERT TO rampart_runtime
    WITH CHECK (tenant_id = app_tenant_id()
                AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = endpoint_id AND e.tenant_id = app_tenant_id()));
CREATE POLICY webhook_deliveries_update ON webhook_deliveries FOR UPDATE TO rampart_runtime
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY webhook_deliveries_delete ON webhook_deliveries FOR DELETE TO rampart_runtime USING (false);

CREATE POLICY webhook_attempts_select ON webhook_attempts FOR SELECT TO rampart_runtime USING (tenant_id = app_tenant_id());
CREATE POLICY webhook_attempts_insert ON webhook_attempts FOR INSERT TO rampart_runtime
    WITH CHECK (tenant_id = app_tenant_id()
                AND EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = delivery_id AND d.tenant_id = app_tenant_id()));
CREATE POLICY webhook_attempts_update ON webhook_attempts FOR UPDATE TO rampart_runtime USING (false);
CREATE POLICY webhook_attempts_delete ON webhook_attempts FOR DELETE TO rampart_runtime USING (false);

GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE ON webhook_endpoint_health TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO rampart_runtime;
GRANT SELECT, INSERT ON webhook_attempts TO rampart_runtime;

-- Key maintenance re-encrypts the sealed secrets like every other sealed column.
CREATE POLICY webhook_endpoints_keys_select ON webhook_endpoints FOR SELECT TO rampart_keys USING (true);
CREATE POLICY webhook_endpoints_keys_update ON webhook_endpoints FOR UPDATE TO rampart_keys USING (true) WITH CHECK (true);
GRANT SELECT (id, tenant_id, secrets_ciphertext, ciphertext_version) ON webhook_endpoints TO rampart_keys;
GRANT UPDATE (secrets_ciphertext, ciphertext_version) ON webhook_endpoints TO rampart_keys;
