-- Tenancy: workspaces, memberships, projects and activity. SQLite has no row-level security: the
-- tenancy crate's queries, which always take a TenantId (and a UserId for activity), are the only
-- isolation on this backend.

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    tenant_id TEXT GENERATED ALWAYS AS (id) STORED,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    deleted_at TEXT
);

CREATE TABLE memberships (
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX projects_tenant_created ON projects (tenant_id, created_at DESC);

CREATE TABLE activity (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    app TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    occurred_at TEXT NOT NULL
);
CREATE INDEX activity_tenant_user ON activity (tenant_id, user_id, occurred_at DESC);
