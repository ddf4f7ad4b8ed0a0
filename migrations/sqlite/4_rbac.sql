-- Roles and permissions as data, invitations, cross-workspace grants and authorization-failure
-- records. SQLite has no row-level security: the tenancy crate's checks are the only layer here.

CREATE TABLE platform_levels (
    level INTEGER PRIMARY KEY CHECK (level BETWEEN 0 AND 100),
    name TEXT NOT NULL UNIQUE
);
INSERT INTO platform_levels (level, name) VALUES
    (100, 'super_admin'), (80, 'admin'), (60, 'manager'), (40, 'user'), (30, 'learner'), (20, 'viewer');
ALTER TABLE users ADD COLUMN platform_level INTEGER NOT NULL DEFAULT 40 REFERENCES platform_levels (level);

CREATE TABLE roles (
    tenant_id TEXT REFERENCES workspaces (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 100),
    permissions TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX roles_tenant_name ON roles (IFNULL(tenant_id, ''), lower(name));
INSERT INTO roles (tenant_id, name, level, permissions, created_at) VALUES
    (NULL, 'Owner', 100, 'activity.read_own api_keys.manage audit.read connections.manage connections.read grants.manage members.invite members.read members.remove members.update_role projects.create projects.delete projects.read projects.update roles.manage sessions.revoke webhooks.manage workspace.delete workspace.update', strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    (NULL, 'Admin', 80, 'activity.read_own api_keys.manage audit.read connections.manage connections.read grants.manage members.invite members.read members.remove members.update_role projects.create projects.delete projects.read projects.update roles.manage sessions.revoke webhooks.manage workspace.update', strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    (NULL, 'Manager', 60, 'activity.read_own audit.read connections.read members.invite members.read projects.*', strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    (NULL, 'Member', 40, 'activity.read_own projects.create projects.read projects.update', strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    (NULL, 'Support Agent', 30, 'activity.read_own audit.read members.read projects.read', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    invited_by TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    accepted_at TEXT,
    accepted_by TEXT REFERENCES users (id) ON DELETE SET NULL,
    revoked_at TEXT
);
CREATE INDEX invitations_tenant ON invitations (tenant_id, created_at DESC);

CREATE TABLE workspace_grants (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    grantee_tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    permission TEXT NOT NULL,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    revoked_by TEXT REFERENCES users (id),
    revoked_at TEXT,
    CHECK (tenant_id <> grantee_tenant_id),
    CHECK (permission IN ('projects.read', 'projects.create', 'projects.update', 'projects.delete'))
);
CREATE INDEX workspace_grants_tenant ON workspace_grants (tenant_id, grantee_tenant_id) WHERE revoked_at IS NULL;

CREATE TABLE authz_failures (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint TEXT NOT NULL,
    required TEXT NOT NULL,
    actual TEXT NOT NULL,
    request_id TEXT NOT NULL,
    occurred_at TEXT NOT NULL
);
CREATE INDEX authz_failures_tenant ON authz_failures (tenant_id, occurred_at DESC);
