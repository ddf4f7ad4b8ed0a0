-- Identity: accounts, one-time tokens, refresh tokens, authentication events, and the outbox of
-- durable side effects. Secrets are stored only as keyed hashes (`*_hash`) or sealed
-- (`*_ciphertext`). These tables are global (not per tenant): identity precedes workspaces.

CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL,
    email_verified_at timestamptz,
    password_hash text,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    failed_signins integer NOT NULL DEFAULT 0,
    lockouts integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE one_time_tokens (
    token_hash text PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    expires_at timestamptz NOT NULL,
    consumed_at timestamptz,
    created_at timestamptz NOT NULL
);
CREATE INDEX one_time_tokens_user_purpose ON one_time_tokens (user_id, purpose);
CREATE INDEX one_time_tokens_expires ON one_time_tokens (expires_at);

CREATE TABLE refresh_tokens (
    token_hash text PRIMARY KEY,
    family_id uuid NOT NULL,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE auth_events (
    id uuid PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    kind text NOT NULL,
    user_id uuid,
    ip text,
    user_agent text,
    request_id text,
    detail text NOT NULL DEFAULT '{}'
);
CREATE INDEX auth_events_user ON auth_events (user_id, occurred_at);

CREATE TABLE scheduled_actions (
    id uuid PRIMARY KEY,
    kind text NOT NULL,
    payload_ciphertext text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'dead', 'cancelled')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    run_at timestamptz NOT NULL,
    locked_until timestamptz,
    last_error text,
    created_at timestamptz NOT NULL,
    completed_at timestamptz
);
CREATE INDEX scheduled_actions_due ON scheduled_actions (run_at) WHERE status IN ('pending', 'running');

GRANT SELECT, INSERT, UPDATE ON users TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON one_time_tokens TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON refresh_tokens TO rampart_runtime;
-- Events are append-only for the server.
GRANT SELECT, INSERT ON auth_events TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON scheduled_actions TO rampart_runtime;
