-- The chaining trigger computes one link per inserted event. Written in LANGUAGE sql and called
-- from the trigger's UPDATE, `audit_link_hash` and its ten `audit_field` calls were not inlined
-- there, so PostgreSQL parsed and planned their bodies again for every event: more time than the
-- rest of the insert, spent while the chain's head row is locked. In PL/pgSQL the expression is
-- planned once per connection and kept. The bytes hashed are unchanged (the same length-prefixed
-- fields as `audit::link_hash` in Rust, which `rampart audit verify` recomputes), so every
-- existing link still verifies.
CREATE OR REPLACE FUNCTION audit_link_hash(chain uuid, seq bigint, prev_hash text, id uuid, occurred_at timestamptz,
                                           category text, action text, actor_id uuid, request_id text, payload text)
    RETURNS text LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    -- Microseconds since the Unix epoch, as text.
    micros text := ((extract(epoch FROM occurred_at) * 1000000)::bigint)::text;
BEGIN
    -- Each field: its byte length, a colon, the value and a newline; `~` and a newline for NULL.
    RETURN encode(sha256(convert_to(E'rampart-audit-v1\n'
        || CASE WHEN chain::text IS NULL THEN E'~\n' ELSE octet_length(chain::text)::text || ':' || chain::text || E'\n' END
        || CASE WHEN seq::text IS NULL THEN E'~\n' ELSE octet_length(seq::text)::text || ':' || seq::text || E'\n' END
        || CASE WHEN prev_hash IS NULL THEN E'~\n' ELSE octet_length(prev_hash)::text || ':' || prev_hash || E'\n' END
        || CASE WHEN id::text IS NULL THEN E'~\n' ELSE octet_length(id::text)::text || ':' || id::text || E'\n' END
        || CASE WHEN micros IS NULL THEN E'~\n' ELSE octet_length(micros)::text || ':' || micros || E'\n' END
        || CASE WHEN category IS NULL THEN E'~\n' ELSE octet_length(category)::text || ':' || category || E'\n' END
        || CASE WHEN action IS NULL THEN E'~\n' ELSE octet_length(action)::text || ':' || action || E'\n' END
        || CASE WHEN actor_id::text IS NULL THEN E'~\n' ELSE octet_length(actor_id::text)::text || ':' || actor_id::text || E'\n' END
        || CASE WHEN request_id IS NULL THEN E'~\n' ELSE octet_length(request_id)::text || ':' || request_id || E'\n' END
        || CASE WHEN payload IS NULL THEN E'~\n' ELSE octet_length(payload)::text || ':' || payload || E'\n' END, 'UTF8')), 'hex');
END $$;

-- No longer called: the fields are spelled out above.
DROP FUNCTION audit_field(text);
