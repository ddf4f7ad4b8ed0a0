-- Sign-in through OpenID Connect providers, and step-up re-authentication (see the PostgreSQL
-- migration of the same number for what each table holds).
CREATE TABLE oidc_flows (
    state_hash TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('sign_in', 'native', 'link', 'reauth')),
    browser_hash TEXT,
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    session_id TEXT,
    nonce_ciphertext TEXT NOT NULL,
    verifier_ciphertext TEXT NOT NULL,
    native_redirect_uri TEXT,
    native_challenge TEXT,
    native_state TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX oidc_flows_expires ON oidc_flows (expires_at);

CREATE TABLE oidc_native_codes (
    code_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    challenge TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    amr TEXT NOT NULL,
    auth_time TEXT,
    expires_at TEXT NOT NULL
);
CREATE INDEX oidc_native_codes_expires ON oidc_native_codes (expires_at);

CREATE TABLE user_identities (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT,
    access_token_ciphertext TEXT,
    refresh_token_ciphertext TEXT,
    access_expires_at TEXT,
    created_at TEXT NOT NULL,
    last_sign_in_at TEXT
);
CREATE UNIQUE INDEX user_identities_subject ON user_identities (issuer, subject);
CREATE INDEX user_identities_user ON user_identities (user_id);

ALTER TABLE refresh_tokens ADD COLUMN auth_time TEXT;
ALTER TABLE refresh_tokens ADD COLUMN amr TEXT;

ALTER TABLE mfa_challenges ADD COLUMN first_factor TEXT NOT NULL DEFAULT 'pwd';

ALTER TABLE workspaces ADD COLUMN require_mfa INTEGER NOT NULL DEFAULT 0;
