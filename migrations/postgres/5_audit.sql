-- The audit trail: `audit_events`, append-only and hash-chained per tenant (the nil uuid is the
-- platform chain, for events that belong to no workspace, such as sign-ins). A row is chained by
-- the database itself, in the inserting statement: a BEFORE INSERT trigger takes the chain's head
-- row lock (so concurrent writers to one tenant stay linear), numbers the event, links it to the
-- previous hash and computes its own. The server's role may only INSERT and SELECT; UPDATE,
-- DELETE and TRUNCATE are refused by triggers even for the owner. The one exception is the
-- retention purge: DELETE by the dedicated `rampart_audit` role (deploy/postgres/
-- bootstrap-roles.sql) of events older than a year, and each purge is itself recorded in the
-- chain it shortened. Authorization failures move here from `authz_failures`, authentication
-- events from `auth_events`.

CREATE TABLE audit_events (
    id uuid PRIMARY KEY,
    -- The chain: a workspace, or the nil uuid for the platform chain. No foreign key: events
    -- outlive the workspace they describe (retained at least a year, purged only by age).
    tenant_id uuid NOT NULL,
    seq bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    category text NOT NULL CHECK (category IN ('authentication', 'authorization', 'membership', 'workspace',
        'webhook', 'llm_usage', 'action', 'data_sync', 'secret', 'privacy', 'retention')),
    action text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,63}$'),
    actor_id uuid,
    request_id text,
    -- Canonical JSON text, hashed exactly as stored. Never a secret value (the event, never the value).
    payload text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    UNIQUE (tenant_id, seq)
);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at DESC);
CREATE INDEX audit_events_tenant_category ON audit_events (tenant_id, category, seq DESC);

-- The newest link of each chain. Written only by the chaining trigger (its row lock is what
-- serialises writers of one chain); the server's role has no privilege on it at all.
CREATE TABLE audit_heads (
    tenant_id uuid PRIMARY KEY,
    seq bigint NOT NULL,
    hash text NOT NULL,
    -- The link before `hash`: kept so one UPDATE both moves the head and returns what it was.
    prev_hash text NOT NULL
);

-- One field of the hashed text: its byte length, a colon, the value and a newline; `~` for NULL.
-- Length-prefixed so no choice of values can make two different events hash alike.
CREATE FUNCTION audit_field(value text) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN value IS NULL THEN E'~\n' ELSE octet_length(value)::text || ':' || value || E'\n' END $$;

-- SHA-256 (FIPS 180-4) of one link; `audit::link_hash` in Rust computes the same bytes, and
-- `rampart audit verify` recomputes every link with it.
CREATE FUNCTION audit_link_hash(chain uuid, seq bigint, prev_hash text, id uuid, occurred_at timestamptz,
                                category text, action text, actor_id uuid, request_id text, payload text)
    RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT encode(sha256(convert_to(
        E'rampart-audit-v1\n' || audit_field(chain::text) || audit_field(seq::text) || audit_field(prev_hash)
        || audit_field(id::text) || audit_field(((extract(epoch FROM occurred_at) * 1000000)::bigint)::text)
        || audit_field(category) || audit_field(action) || audit_field(actor_id::text)
        || audit_field(request_id) || audit_field(payload), 'UTF8')), 'hex') $$;

-- Numbers and links a new event, whatever the inserter put in seq, prev_hash and hash. One
-- UPDATE of the head row takes its lock, computes the new link from the old head (SET reads the
-- old values) and returns both; only a chain's first event inserts the head row.
CREATE FUNCTION audit_events_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public AS $$
BEGIN
    NEW.occurred_at := date_trunc('microseconds', NEW.occurred_at);
    LOOP
        UPDATE audit_heads h
           SET seq = h.seq + 1,
               prev_hash = h.hash,
               hash = audit_link_hash(NEW.tenant_id, h.seq + 1, h.hash, NEW.id, NEW.occurred_at, NEW.category,
                                      NEW.action, NEW.actor_id, NEW.request_id, NEW.payload)
         WHERE h.tenant_id = NEW.tenant_id
        RETURNING h.seq, h.prev_hash, h.hash INTO NEW.seq, NEW.prev_hash, NEW.hash;
        IF FOUND THEN
            RETURN NEW;
        END IF;
        NEW.seq := 1;
        NEW.prev_hash := repeat('0', 64);
        NEW.hash := audit_link_hash(NEW.tenant_id, 1, NEW.prev_hash, NEW.id, NEW.occurred_at, NEW.category,
                                    NEW.action, NEW.actor_id, NEW.request_id, NEW.payload);
        INSERT INTO audit_heads (tenant_id, seq, hash, prev_hash) VALUES (NEW.tenant_id, 1, NEW.hash, NEW.prev_hash)
            ON CONFLICT (tenant_id) DO NOTHING;
        IF FOUND THEN
            RETURN NEW;
        END IF;
        -- Another writer created the head first: link after its event instead.
    END LOOP;
END $$;
CREATE TRIGGER audit_events_chain BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_chain();

-- Append-only: no UPDATE, no TRUNCATE, and DELETE only by the retention role, of events older
-- than a year (the seeds' "retained ≥ 1 year").
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_user = 'rampart_audit' AND OLD.occurred_at < now() - interval '365 days' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Every retention purge is recorded in each chain it shortened, with the hash of the last removed
-- link: the anchor from which `rampart audit verify` checks the rest.
CREATE FUNCTION audit_events_record_purge() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public AS $$
DECLARE
    gone record;
BEGIN
    FOR gone IN
        SELECT p.tenant_id, count(*) AS deleted, max(p.seq) AS through_seq,
               (array_agg(p.hash ORDER BY p.seq DESC))[1] AS anchor_hash
          FROM purged p GROUP BY p.tenant_id
    LOOP
        PERFORM set_config('app.tenant_id', gone.tenant_id::text, true);
        INSERT INTO audit_events (id, tenant_id, seq, occurred_at, category, action, actor_id, request_id, payload, prev_hash, hash)
        VALUES (gen_random_uuid(), gone.tenant_id, 0, now(), 'retention', 'retention.purged', NULL, NULL,
                json_build_object('through_seq', gone.through_seq, 'anchor_hash', gone.anchor_hash,
                                  'deleted', gone.deleted)::text, '', '');
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER audit_events_record_purge AFTER DELETE ON audit_events
    REFERENCING OLD TABLE AS purged FOR EACH STATEMENT EXECUTE FUNCTION audit_events_record_purge();

-- Earlier records move into their chains, oldest first (before row-level security is forced,
-- since the owner has no tenant context here).
INSERT INTO audit_events (id, tenant_id, seq, occurred_at, category, action, actor_id, request_id, payload, prev_hash, hash)
SELECT id, tenant_id, 0, occurred_at, 'authorization', 'access.denied', user_id, request_id,
       json_build_object('endpoint', endpoint, 'required', required, 'actual', actual)::text, '', ''
  FROM authz_failures ORDER BY occurred_at, id;
INSERT INTO audit_events (id, tenant_id, seq, occurred_at, category, action, actor_id, request_id, payload, prev_hash, hash)
SELECT id, '00000000-0000-0000-0000-000000000000'::uuid, 0, occurred_at, 'authentication', 'auth.' || kind, user_id,
       request_id, json_build_object('ip', ip, 'user_agent', user_agent, 'detail', detail::json)::text, '', ''
  FROM auth_events ORDER BY occurred_at, id;
DROP TABLE authz_failures;
DROP TABLE auth_events;

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;

-- A workspace's chain is read with audit.read; the platform chain's events by the user they
-- concern. Written in the current tenant's chain or the platform chain only.
CREATE POLICY audit_events_select ON audit_events FOR SELECT TO rampart_runtime
    USING ((tenant_id = app_tenant_id() AND (SELECT app_can('audit.read')))
           OR (tenant_id = '00000000-0000-0000-0000-000000000000'::uuid AND actor_id = app_user_id()));
CREATE POLICY audit_events_insert ON audit_events FOR INSERT
    WITH CHECK (tenant_id = app_tenant_id() OR tenant_id = '00000000-0000-0000-0000-000000000000'::uuid);
CREATE POLICY audit_events_update ON audit_events FOR UPDATE USING (false);
-- The server never deletes an event (it holds no DELETE privilege either).
CREATE POLICY audit_events_delete_runtime ON audit_events FOR DELETE TO rampart_runtime USING (false);
-- The retention role reads every chain (verification) and deletes only what is past retention.
CREATE POLICY audit_events_audit_select ON audit_events FOR SELECT TO rampart_audit USING (true);
CREATE POLICY audit_events_delete ON audit_events FOR DELETE TO rampart_audit
    USING (occurred_at < now() - interval '365 days');

-- Heads: maintained by the chaining trigger (running as the owner) for the chain being written.
CREATE POLICY audit_heads_select ON audit_heads FOR SELECT
    USING (tenant_id = app_tenant_id() OR tenant_id = '00000000-0000-0000-0000-000000000000'::uuid
           OR pg_has_role(current_user, 'rampart_audit', 'USAGE'));
CREATE POLICY audit_heads_insert ON audit_heads FOR INSERT
    WITH CHECK (tenant_id = app_tenant_id() OR tenant_id = '00000000-0000-0000-0000-000000000000'::uuid);
CREATE POLICY audit_heads_update ON audit_heads FOR UPDATE
    USING (tenant_id = app_tenant_id() OR tenant_id = '00000000-0000-0000-0000-000000000000'::uuid)
    WITH CHECK (tenant_id = app_tenant_id() OR tenant_id = '00000000-0000-0000-0000-000000000000'::uuid);
CREATE POLICY audit_heads_delete ON audit_heads FOR DELETE USING (false);


GRANT SELECT, INSERT ON audit_events TO rampart_runtime;
GRANT USAGE ON SCHEMA public TO rampart_audit;
GRANT SELECT, DELETE ON audit_events TO rampart_audit;
GRANT SELECT ON audit_heads TO rampart_audit;
