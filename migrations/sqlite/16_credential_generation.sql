-- Revocation that reaches every credential: see migrations/postgres/16_credential_generation.sql.
ALTER TABLE users ADD COLUMN credential_generation INTEGER NOT NULL DEFAULT 0;

ALTER TABLE refresh_tokens ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE refresh_tokens ADD COLUMN family_created_at TEXT;
ALTER TABLE refresh_tokens ADD COLUMN ip TEXT;
ALTER TABLE refresh_tokens ADD COLUMN user_agent TEXT;

CREATE TABLE revoked_families (
    family_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    until TEXT NOT NULL
);
CREATE INDEX revoked_families_until ON revoked_families (until);
