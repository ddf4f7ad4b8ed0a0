-- Tenancy: workspaces (the tenants), memberships, and an example domain — `projects` (workspace
-- data) and `activity` (records private to one user). Every table with tenant data has
-- `tenant_id`, ENABLE and FORCE ROW LEVEL SECURITY, and a policy for each command. Policies read
-- the per-transaction settings through NULLIF(current_setting(..., true), '') so an unset context
-- matches nothing (fail closed, no error).

-- The current tenant and principal, as set by the tenancy crate with set_config(..., true).
-- STABLE, not VOLATILE: evaluated once per statement rather than once per row.
CREATE FUNCTION app_tenant_id() RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;
CREATE FUNCTION app_user_id() RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::uuid $$;

CREATE TABLE workspaces (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL GENERATED ALWAYS AS (id) STORED,
    name text NOT NULL,
    created_by uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    deleted_at timestamptz
);

CREATE TABLE memberships (
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE projects (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX projects_tenant_created ON projects (tenant_id, created_at DESC);

CREATE TABLE activity (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    app text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    content_hash text NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX activity_tenant_user ON activity (tenant_id, user_id, occurred_at DESC);

ALTER TABLE workspaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE workspaces FORCE ROW LEVEL SECURITY;
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE projects FORCE ROW LEVEL SECURITY;
ALTER TABLE activity ENABLE ROW LEVEL SECURITY;
ALTER TABLE activity FORCE ROW LEVEL SECURITY;

-- Workspaces: the current tenant only. A member may also see the workspaces they belong to (to
-- list them) through memberships.
CREATE POLICY workspaces_select ON workspaces FOR SELECT
    USING (id = app_tenant_id()
           OR EXISTS (SELECT 1 FROM memberships m WHERE m.tenant_id = workspaces.id AND m.user_id = app_user_id()));
CREATE POLICY workspaces_insert ON workspaces FOR INSERT WITH CHECK (id = app_tenant_id() AND created_by = app_user_id());
CREATE POLICY workspaces_update ON workspaces FOR UPDATE USING (id = app_tenant_id()) WITH CHECK (id = app_tenant_id());
CREATE POLICY workspaces_delete ON workspaces FOR DELETE USING (id = app_tenant_id());

-- Memberships: rows of the current tenant, plus the principal's own rows in any tenant.
CREATE POLICY memberships_select ON memberships FOR SELECT
    USING (tenant_id = app_tenant_id() OR user_id = app_user_id());
CREATE POLICY memberships_insert ON memberships FOR INSERT WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY memberships_update ON memberships FOR UPDATE USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY memberships_delete ON memberships FOR DELETE USING (tenant_id = app_tenant_id());

-- Projects: workspace data.
CREATE POLICY projects_select ON projects FOR SELECT USING (tenant_id = app_tenant_id());
CREATE POLICY projects_insert ON projects FOR INSERT WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY projects_update ON projects FOR UPDATE USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
CREATE POLICY projects_delete ON projects FOR DELETE USING (tenant_id = app_tenant_id());

-- Activity: private to its user, even from the workspace's owners and admins.
CREATE POLICY activity_select ON activity FOR SELECT USING (tenant_id = app_tenant_id() AND user_id = app_user_id());
CREATE POLICY activity_insert ON activity FOR INSERT WITH CHECK (tenant_id = app_tenant_id() AND user_id = app_user_id());
CREATE POLICY activity_update ON activity FOR UPDATE
    USING (tenant_id = app_tenant_id() AND user_id = app_user_id())
    WITH CHECK (tenant_id = app_tenant_id() AND user_id = app_user_id());
CREATE POLICY activity_delete ON activity FOR DELETE USING (tenant_id = app_tenant_id() AND user_id = app_user_id());

GRANT EXECUTE ON FUNCTION app_tenant_id(), app_user_id() TO rampart_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON workspaces, memberships, projects, activity TO rampart_runtime;
