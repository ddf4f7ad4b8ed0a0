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

-- Token families ended one by one (signed out, revoked by id, reused refresh token): their access
-- tokens are refused from the next request, read in the same query as the user (not a second
-- round trip), whatever replica answers and whether or not Redis is up. A row outlives the
-- longest token of its family (`until`), then the purge removes it.
CREATE TABLE revoked_families (
    family_id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    until timestamptz NOT NULL
);
CREATE INDEX revoked_families_until ON revoked_families (until);
GRANT SELECT, INSERT, UPDATE, DELETE ON revoked_families TO rampart_runtime;
