-- Each user's allowed activity capture windows in a workspace (the pipeline's time-window stage).
CREATE TABLE activity_windows (
    tenant_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    utc_offset_minutes INTEGER NOT NULL CHECK (utc_offset_minutes BETWEEN -840 AND 840),
    windows TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX activity_content ON activity (tenant_id, user_id, content_hash);
