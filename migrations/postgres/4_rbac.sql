-- Roles and permissions as data, invitations, cross-workspace grants, authorization-failure
-- records, and write policies that mirror RBAC in the database: a write to tenant data must pass
-- both the tenant check and `app_can(permission)`, which reads the principal's role (or an active
-- grant) under the same per-transaction settings as every other policy.

-- Platform levels (a user's standing across the whole platform), as data.
CREATE TABLE platform_levels (
    level smallint PRIMARY KEY CHECK (level BETWEEN 0 AND 100),
    name text NOT NULL UNIQUE
);
INSERT INTO platform_levels (level, name) VALUES
    (100, 'super_admin'), (80, 'admin'), (60, 'manager'), (40, 'user'), (30, 'learner'), (20, 'viewer');
ALTER TABLE users ADD COLUMN platform_level smallint NOT NULL DEFAULT 40 REFERENCES platform_levels (level);

-- Workspace roles. Built-in roles have no tenant and are shared by every workspace; custom roles
-- belong to one. `permissions` is a space-separated list of `resource.action` (or `resource.*`).
CREATE TABLE roles (
    tenant_id uuid REFERENCES workspaces (id) ON DELETE CASCADE,
    name text NOT NULL,
    level smallint NOT NULL CHECK (level BETWEEN 0 AND 100),
    permissions text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX roles_tenant_name ON roles (COALESCE(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name));
INSERT INTO roles (tenant_id, name, level, permissions, created_at) VALUES
    (NULL, 'Owner', 100, 'activity.read_own api_keys.manage audit.read connections.manage connections.read grants.manage members.invite members.read members.remove members.update_role projects.create projects.delete projects.read projects.update roles.manage sessions.revoke webhooks.manage workspace.delete workspace.update', now()),
    (NULL, 'Admin', 80, 'activity.read_own api_keys.manage audit.read connections.manage connections.read grants.manage members.invite members.read members.remove members.update_role projects.create projects.delete projects.read projects.update roles.manage sessions.revoke webhooks.manage workspace.update', now()),
    (NULL, 'Manager', 60, 'activity.read_own audit.read connections.read members.invite members.read projects.*', now()),
    (NULL, 'Member', 40, 'activity.read_own projects.create projects.read projects.update', now()),
    (NULL, 'Support Agent', 30, 'activity.read_own audit.read members.read projects.read', now());

CREATE TABLE invitations (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email text NOT NULL,
    role text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    invited_by uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid REFERENCES users (id) ON DELETE SET NULL,
    -- The transaction that accepted it: the membership insert policy admits the invitee only in
    -- that very transaction, so an accepted invitation cannot be replayed later.
    accepted_xact xid8,
    revoked_at timestamptz
);
CREATE INDEX invitations_tenant ON invitations (tenant_id, created_at DESC);

-- An invitation changes only by being accepted or revoked; the acceptance is stamped with its
-- transaction.
CREATE FUNCTION invitations_stamp_acceptance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.tenant_id, NEW.email, NEW.role, NEW.token_hash, NEW.invited_by, NEW.created_at, NEW.expires_at)
       IS DISTINCT FROM
       (OLD.id, OLD.tenant_id, OLD.email, OLD.role, OLD.token_hash, OLD.invited_by, OLD.created_at, OLD.expires_at) THEN
        RAISE EXCEPTION 'an invitation is only accepted or revoked' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.accepted_at IS NOT NULL AND OLD.accepted_at IS NULL THEN
        NEW.accepted_xact := pg_current_xact_id();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER invitations_stamp_acceptance BEFORE UPDATE ON invitations
    FOR EACH ROW EXECUTE FUNCTION invitations_stamp_acceptance();

-- Cross-workspace grants: workspace `tenant_id` lets the members of `grantee_tenant_id` hold one
-- permission on its data. Revocation is an update, so the record stays.
CREATE TABLE workspace_grants (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    grantee_tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    permission text NOT NULL,
    created_by uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    revoked_by uuid REFERENCES users (id),
    revoked_at timestamptz,
    CHECK (tenant_id <> grantee_tenant_id),
    -- Data permissions only (tenancy::grants::GRANTABLE), never administration.
    CHECK (permission IN ('projects.read', 'projects.create', 'projects.update', 'projects.delete'))
);
CREATE INDEX workspace_grants_tenant ON workspace_grants (tenant_id, grantee_tenant_id) WHERE revoked_at IS NULL;

-- A grant changes only by being revoked, once.
CREATE FUNCTION workspace_grants_revoke_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.tenant_id, NEW.grantee_tenant_id, NEW.permission, NEW.created_by, NEW.created_at)
       IS DISTINCT FROM (OLD.id, OLD.tenant_id, OLD.grantee_tenant_id, OLD.permission, OLD.created_by, OLD.created_at)
       OR OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL THEN
        RAISE EXCEPTION 'a grant is only revoked, once' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER workspace_grants_revoke_only BEFORE UPDATE ON workspace_grants
    FOR EACH ROW EXECUTE FUNCTION workspace_grants_revoke_only();

-- Authorization failures (OWASP ASVS 5.0 V16.3.2): append-only.
CREATE TABLE authz_failures (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint text NOT NULL,
    required text NOT NULL,
    actual text NOT NULL,
    request_id text NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX authz_failures_tenant ON authz_failures (tenant_id, occurred_at DESC);

-- Sets the tenant and principal for this transaction and answers, in the same statement (one
-- round trip), how the principal may act in the tenant: through their membership's role or, for a
-- non-member, through active grants to any workspace they belong to. No row: no access — and
-- then, unless `keep_context` (founding a workspace, accepting an invitation, the purge job), the
-- tenant is unset again, so a stranger's transaction reads and writes nothing of the tenant even
-- if the application forgot a check.
CREATE FUNCTION app_enter(tenant uuid, principal uuid, keep_context boolean)
    RETURNS TABLE (via text, role text, level smallint, permissions text)
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('app.tenant_id', tenant::text, true), set_config('app.user_id', principal::text, true);
    RETURN QUERY
        SELECT 'membership'::text, r.name, r.level, r.permissions
          FROM memberships m
          JOIN workspaces w ON w.id = m.tenant_id AND w.deleted_at IS NULL
          JOIN roles r ON r.name = m.role AND (r.tenant_id IS NULL OR r.tenant_id = m.tenant_id)
         WHERE m.tenant_id = tenant AND m.user_id = principal;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT 'grant'::text, 'Grant'::text, 0::smallint, string_agg(DISTINCT g.permission, ' ')
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

-- The level of the current principal's role in the current tenant (members only; -1 otherwise).
CREATE FUNCTION app_level() RETURNS integer LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN COALESCE((
        SELECT r.level
          FROM memberships m
          JOIN roles r ON r.name = m.role AND (r.tenant_id IS NULL OR r.tenant_id = m.tenant_id)
         WHERE m.tenant_id = app_tenant_id() AND m.user_id = app_user_id()), -1);
END $$;

-- The level of the role called `role_name` in the current tenant (101, above everything, if unknown).
CREATE FUNCTION app_role_level(role_name text) RETURNS integer LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN COALESCE((
        SELECT r.level FROM roles r
         WHERE r.name = role_name AND (r.tenant_id IS NULL OR r.tenant_id = app_tenant_id())), 101);
END $$;

-- The current principal's e-mail address.
CREATE FUNCTION app_user_email() RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT email FROM users WHERE id = app_user_id() $$;

-- Whether the current principal holds `wanted` in the current tenant. STABLE, and called as
-- `(SELECT app_can(...))` in policies so it runs once per statement, not once per row.
CREATE FUNCTION app_can(wanted text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1
          FROM memberships m
          JOIN workspaces w ON w.id = m.tenant_id AND w.deleted_at IS NULL
          JOIN roles r ON r.name = m.role AND (r.tenant_id IS NULL OR r.tenant_id = m.tenant_id)
         WHERE m.tenant_id = app_tenant_id() AND m.user_id = app_user_id()
           AND (wanted = ANY (string_to_array(r.permissions, ' '))
                OR split_part(wanted, '.', 1) || '.*' = ANY (string_to_array(r.permissions, ' '))))
        OR EXISTS (
        SELECT 1
          FROM workspace_grants g
          JOIN workspaces w ON w.id = g.tenant_id AND w.deleted_at IS NULL
          JOIN memberships gm ON gm.tenant_id = g.grantee_tenant_id AND gm.user_id = app_user_id()
          JOIN workspaces gw ON gw.id = g.grantee_tenant_id AND gw.deleted_at IS NULL
         WHERE g.tenant_id = app_tenant_id() AND g.revoked_at IS NULL AND g.permission = wanted);
END $$;

-- Whether the current principal created the current workspace and nobody belongs to it yet: the
-- founder becoming its first Owner.
CREATE FUNCTION app_is_founding() RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM workspaces w WHERE w.id = app_tenant_id() AND w.created_by = app_user_id())
       AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.tenant_id = app_tenant_id());
END $$;

-- Whether the current principal accepted an invitation to the current workspace, for `role`, in
-- this very transaction.
CREATE FUNCTION app_accepted_invitation(wanted_role text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM invitations i
         WHERE i.tenant_id = app_tenant_id() AND i.accepted_by = app_user_id() AND i.role = wanted_role
           AND i.accepted_xact = pg_current_xact_id());
END $$;

ALTER TABLE roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE roles FORCE ROW LEVEL SECURITY;
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
ALTER TABLE workspace_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE workspace_grants FORCE ROW LEVEL SECURITY;
ALTER TABLE authz_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE authz_failures FORCE ROW LEVEL SECURITY;

-- Workspaces: renaming needs workspace.update, marking deleted needs workspace.delete, and a row
-- is removed only once marked deleted (the purge job).
DROP POLICY workspaces_update ON workspaces;
DROP POLICY workspaces_delete ON workspaces;
CREATE POLICY workspaces_update ON workspaces FOR UPDATE
    USING (id = app_tenant_id() AND deleted_at IS NULL)
    WITH CHECK (id = app_tenant_id() AND CASE WHEN deleted_at IS NULL THEN (SELECT app_can('workspace.update'))
                                              ELSE (SELECT app_can('workspace.delete')) END);
CREATE POLICY workspaces_delete ON workspaces FOR DELETE USING (id = app_tenant_id() AND deleted_at IS NOT NULL);

-- Memberships: one joins only as the founder or by accepting an invitation in this transaction;
-- role changes need members.update_role; removal needs members.remove (or is leaving).
DROP POLICY memberships_insert ON memberships;
DROP POLICY memberships_update ON memberships;
DROP POLICY memberships_delete ON memberships;
CREATE POLICY memberships_insert ON memberships FOR INSERT WITH CHECK (
    tenant_id = app_tenant_id() AND user_id = app_user_id()
    AND ((role = 'Owner' AND (SELECT app_is_founding())) OR app_accepted_invitation(role)));
CREATE POLICY memberships_update ON memberships FOR UPDATE
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('members.update_role'))
           AND app_role_level(role) <= (SELECT app_level()))
    WITH CHECK (tenant_id = app_tenant_id() AND app_role_level(role) <= (SELECT app_level()));
CREATE POLICY memberships_delete ON memberships FOR DELETE
    USING (tenant_id = app_tenant_id()
           AND (user_id = app_user_id()
                OR ((SELECT app_can('members.remove')) AND app_role_level(role) <= (SELECT app_level()))));

-- Projects: every write needs its permission.
DROP POLICY projects_insert ON projects;
DROP POLICY projects_update ON projects;
DROP POLICY projects_delete ON projects;
CREATE POLICY projects_insert ON projects FOR INSERT
    WITH CHECK (tenant_id = app_tenant_id() AND (SELECT app_can('projects.create')));
CREATE POLICY projects_update ON projects FOR UPDATE
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('projects.update')))
    WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY projects_delete ON projects FOR DELETE
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('projects.delete')));

-- Roles: built-in roles are readable everywhere and writable nowhere.
CREATE POLICY roles_select ON roles FOR SELECT USING (tenant_id IS NULL OR tenant_id = app_tenant_id());
CREATE POLICY roles_insert ON roles FOR INSERT
    WITH CHECK (tenant_id = app_tenant_id() AND (SELECT app_can('roles.manage')) AND level <= (SELECT app_level()));
CREATE POLICY roles_update ON roles FOR UPDATE
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('roles.manage')) AND level <= (SELECT app_level()))
    WITH CHECK (tenant_id = app_tenant_id() AND level <= (SELECT app_level()));
CREATE POLICY roles_delete ON roles FOR DELETE USING (tenant_id = app_tenant_id() AND (SELECT app_can('roles.manage')));

-- Invitations: issued and revoked with members.invite; accepted by the invitee themselves.
CREATE POLICY invitations_select ON invitations FOR SELECT USING (tenant_id = app_tenant_id());
CREATE POLICY invitations_insert ON invitations FOR INSERT
    WITH CHECK (tenant_id = app_tenant_id() AND invited_by = app_user_id() AND (SELECT app_can('members.invite'))
                AND app_role_level(role) <= (SELECT app_level()));
-- Accepted only by the invited address itself; revoked with members.invite. The trigger keeps
-- every other column as it was.
CREATE POLICY invitations_update ON invitations FOR UPDATE
    USING (tenant_id = app_tenant_id() AND accepted_at IS NULL AND revoked_at IS NULL)
    WITH CHECK (tenant_id = app_tenant_id()
                AND ((accepted_by = app_user_id() AND email = (SELECT app_user_email()) AND revoked_at IS NULL)
                     OR (accepted_at IS NULL AND (SELECT app_can('members.invite')))));
CREATE POLICY invitations_delete ON invitations FOR DELETE USING (tenant_id = app_tenant_id() AND (SELECT app_can('members.invite')));

-- Grants: both sides can see them; only the granting workspace manages them; never deleted.
CREATE POLICY workspace_grants_select ON workspace_grants FOR SELECT
    USING (tenant_id = app_tenant_id() OR grantee_tenant_id = app_tenant_id());
CREATE POLICY workspace_grants_insert ON workspace_grants FOR INSERT
    WITH CHECK (tenant_id = app_tenant_id() AND created_by = app_user_id() AND (SELECT app_can('grants.manage')));
CREATE POLICY workspace_grants_update ON workspace_grants FOR UPDATE
    USING (tenant_id = app_tenant_id() AND revoked_at IS NULL AND (SELECT app_can('grants.manage')))
    WITH CHECK (tenant_id = app_tenant_id() AND revoked_by = app_user_id());
CREATE POLICY workspace_grants_delete ON workspace_grants FOR DELETE USING (false);

-- Authorization failures: written by the principal they concern, read with audit.read, never
-- changed.
CREATE POLICY authz_failures_select ON authz_failures FOR SELECT
    USING (tenant_id = app_tenant_id() AND (SELECT app_can('audit.read')));
CREATE POLICY authz_failures_insert ON authz_failures FOR INSERT
    WITH CHECK (tenant_id = app_tenant_id() AND user_id = app_user_id());
CREATE POLICY authz_failures_update ON authz_failures FOR UPDATE USING (false);
CREATE POLICY authz_failures_delete ON authz_failures FOR DELETE USING (false);

GRANT SELECT ON platform_levels TO rampart_runtime;
GRANT EXECUTE ON FUNCTION app_enter(uuid, uuid, boolean), app_can(text), app_is_founding(),
    app_accepted_invitation(text), app_level(), app_role_level(text), app_user_email() TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON roles, invitations TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE ON workspace_grants TO rampart_runtime;
GRANT SELECT, INSERT ON authz_failures TO rampart_runtime;
