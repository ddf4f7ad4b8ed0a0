-- Multi-factor authentication of accounts: one TOTP secret per user (sealed with the server's
-- vault key and bound to the user; confirmed by a first code before it counts), the last time
-- step accepted (a code is accepted at most once), ten single-use recovery codes stored as keyed
-- hashes, and the short-lived challenges between the password step and the second factor.
CREATE TABLE user_totp (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_ciphertext text NOT NULL,
    confirmed_at timestamptz,
    last_step bigint,
    created_at timestamptz NOT NULL
);

CREATE TABLE recovery_codes (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash text NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE mfa_challenges (
    token_hash text PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- `session` (browser sign-in) or `token` (API client): a challenge completes only its own flow.
    kind text NOT NULL CHECK (kind IN ('session', 'token')),
    attempts integer NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);

GRANT SELECT, INSERT, UPDATE, DELETE ON user_totp TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON recovery_codes TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_challenges TO rampart_runtime;
