-- Revocation that reaches every credential. Each user has a credential generation, raised by
-- every event that ends their credentials (password change or reset, revoke-all, an
-- administrator ending their sessions, suspension). Browser sessions, refresh tokens and access
-- tokens carry the generation they were issued under; one issued under an older generation is
-- refused on its next use, so a credential minted concurrently with the event cannot outlive it.
-- (JWT `iat` has one-second precision and cannot order events within a second.)
ALTER TABLE users ADD COLUMN credential_generation bigint NOT NULL DEFAULT 0;
GRANT UPDATE (credential_generation) ON users TO rampart_runtime;

-- Token families as a user sees them beside browser sessions: when the family began (its absolute
-- limit runs from there) and where its latest refresh came from.
ALTER TABLE refresh_tokens ADD COLUMN generation bigint NOT NULL DEFAULT 0;
ALTER TABLE refresh_tokens ADD COLUMN family_created_at timestamptz;
ALTER TABLE refresh_tokens ADD COLUMN ip text;
ALTER TABLE refresh_tokens ADD COLUMN user_agent text;
