-- Sign-in through OpenID Connect providers, and step-up re-authentication.
--
-- `oidc_flows` holds an authorization request between its start and its callback (so a restart or
-- another replica completes it): the state as a keyed hash (single use: the callback deletes the
-- row it matches), the nonce and the PKCE verifier sealed with the server's vault key, the hash of
-- the cookie that binds a browser flow to the browser that began it, and for native clients their
-- own PKCE challenge, loopback or custom-scheme redirect and state (RFC 8252).
CREATE TABLE oidc_flows (
    state_hash text PRIMARY KEY,
    provider text NOT NULL,
    purpose text NOT NULL CHECK (purpose IN ('sign_in', 'native', 'link', 'reauth')),
    browser_hash text,
    -- The account a `link` or `reauth` flow acts for, and the session it re-authenticates.
    user_id uuid REFERENCES users (id) ON DELETE CASCADE,
    session_id uuid,
    nonce_ciphertext text NOT NULL,
    verifier_ciphertext text NOT NULL,
    native_redirect_uri text,
    native_challenge text,
    native_state text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX oidc_flows_expires ON oidc_flows (expires_at);

-- The one-minute code a native client exchanges, with the verifier of its own PKCE challenge,
-- for its tokens.
CREATE TABLE oidc_native_codes (
    code_hash text PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    challenge text NOT NULL,
    redirect_uri text NOT NULL,
    amr text NOT NULL,
    auth_time timestamptz,
    expires_at timestamptz NOT NULL
);
CREATE INDEX oidc_native_codes_expires ON oidc_native_codes (expires_at);

-- An account's identities at providers: one (issuer, subject) belongs to one account (the issuer
-- is kept, so a provider name pointed at another issuer never matches the old one's subjects). The
-- provider's tokens, when kept, are sealed with the server's vault key and bound to the identity.
CREATE TABLE user_identities (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider text NOT NULL,
    issuer text NOT NULL,
    subject text NOT NULL,
    email text,
    access_token_ciphertext text,
    refresh_token_ciphertext text,
    access_expires_at timestamptz,
    created_at timestamptz NOT NULL,
    last_sign_in_at timestamptz
);
CREATE UNIQUE INDEX user_identities_subject ON user_identities (issuer, subject);
CREATE INDEX user_identities_user ON user_identities (user_id);

-- A token family keeps when and how its sign-in authenticated (OpenID Connect `auth_time`,
-- RFC 8176 `amr`), so access tokens carry them across refreshes and step-up can be judged.
ALTER TABLE refresh_tokens ADD COLUMN auth_time timestamptz;
ALTER TABLE refresh_tokens ADD COLUMN amr text;

-- A second-factor challenge remembers the first factor it follows (`pwd` or `fed`), so the
-- session it completes says how it was authenticated.
ALTER TABLE mfa_challenges ADD COLUMN first_factor text NOT NULL DEFAULT 'pwd';

-- A workspace may require its members to have signed in with a second factor.
ALTER TABLE workspaces ADD COLUMN require_mfa boolean NOT NULL DEFAULT false;

-- `app_enter` answers the requirement with the access, in the same round trip: a principal
-- without a second factor is refused before any statement of theirs runs.
DROP FUNCTION app_enter(uuid, uuid, boolean);
CREATE FUNCTION app_enter(tenant uuid, principal uuid, keep_context boolean)
    RETURNS TABLE (via text, role text, level smallint, permissions text, require_mfa boolean)
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('app.tenant_id', tenant::text, true), set_config('app.user_id', principal::text, true);
    RETURN QUERY
        SELECT 'membership'::text, r.name, r.level, r.permissions, w.require_mfa
          FROM memberships m
          JOIN workspaces w ON w.id = m.tenant_id AND w.deleted_at IS NULL
          JOIN roles r ON r.name = m.role AND (r.tenant_id IS NULL OR r.tenant_id = m.tenant_id)
         WHERE m.tenant_id = tenant AND m.user_id = principal;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT 'grant'::text, 'Grant'::text, 0::smallint, string_agg(DISTINCT g.permission, ' '), bool_or(w.require_mfa)
          FROM workspace_grants g
          JOIN workspaces w ON w.id = g.tenant_id AND w.deleted_at IS NULL
          JOIN memberships gm ON gm.tenant_id = g.grantee_tenant_id AND gm.user_id = principal
          JOIN workspaces gw ON gw.id = g.grantee_tenant_id AND gw.deleted_at IS NULL
         WHERE g.tenant_id = tenant AND g.revoked_at IS NULL
        HAVING count(*) > 0;
    IF NOT FOUND AND NOT keep_context THEN
        PERFORM set_config('app.tenant_id', '', true);
    END IF;
END $$;
GRANT EXECUTE ON FUNCTION app_enter(uuid, uuid, boolean) TO rampart_runtime;

GRANT SELECT, INSERT, UPDATE, DELETE ON oidc_flows TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON oidc_native_codes TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON user_identities TO rampart_runtime;
