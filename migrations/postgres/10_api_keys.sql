-- API keys: per workspace, with a name, scopes (`resource.action`), an optional expiry and their
-- own request caps. The key is shown once; only its HMAC-SHA256 hash (keyed by
-- secrets.token_hmac_key) is stored, found by equality. A key acts as the member who created it,
-- never beyond its scopes nor beyond that member's role at the time of the request.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name text NOT NULL,
    -- The first characters of the key, to recognise it in a listing.
    prefix text NOT NULL,
    key_hash text NOT NULL UNIQUE,
    -- A JSON list of permissions.
    scopes text NOT NULL,
    per_minute integer NOT NULL CHECK (per_minute > 0),
    per_month bigint NOT NULL CHECK (per_month > 0),
    created_by uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY api_keys_select ON api_keys FOR SELECT TO rampart_runtime USING (tenant_id = app_tenant_id());
CREATE POLICY api_keys_insert ON api_keys FOR INSERT TO rampart_runtime
    WITH CHECK (tenant_id = app_tenant_id() AND created_by = app_user_id() AND (SELECT app_can('api_keys.manage')));
-- Updates are the key's last use (recorded while authenticating it, before any principal) and
-- its revocation; a revoked key stays revoked (trigger below). Keys are never deleted but with
-- their workspace.
CREATE POLICY api_keys_update ON api_keys FOR UPDATE TO rampart_runtime
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY api_keys_delete ON api_keys FOR DELETE TO rampart_runtime USING (false);
GRANT SELECT, INSERT ON api_keys TO rampart_runtime;
GRANT UPDATE (last_used_at, revoked_at) ON api_keys TO rampart_runtime;

CREATE FUNCTION api_keys_stay_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'a revoked API key stays revoked';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER api_keys_stay_revoked BEFORE UPDATE ON api_keys FOR EACH ROW EXECUTE FUNCTION api_keys_stay_revoked();
