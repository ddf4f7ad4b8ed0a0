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

GRANT SELECT, INSERT, UPDATE, DELETE ON oidc_flows TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON oidc_native_codes TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON user_identities TO rampart_runtime;
