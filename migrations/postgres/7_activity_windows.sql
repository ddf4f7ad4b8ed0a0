-- Activity ingestion runs the seven-stage pipeline (crates/pii/src/pipeline.rs); its time-window
-- stage reads each user's allowed capture windows in a workspace from here. Private to the user,
-- like their activity: not even the workspace's Owner reads or sets them.
CREATE TABLE activity_windows (
    tenant_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The user's offset from UTC, minutes (UTC-14:00 to UTC+14:00).
    utc_offset_minutes integer NOT NULL CHECK (utc_offset_minutes BETWEEN -840 AND 840),
    -- JSON list of {days, start, end}; empty means capture is always allowed.
    windows text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

ALTER TABLE activity_windows ENABLE ROW LEVEL SECURITY;
ALTER TABLE activity_windows FORCE ROW LEVEL SECURITY;
CREATE POLICY activity_windows_select ON activity_windows FOR SELECT
    USING (tenant_id = app_tenant_id() AND user_id = app_user_id());
CREATE POLICY activity_windows_insert ON activity_windows FOR INSERT
    WITH CHECK (tenant_id = app_tenant_id() AND user_id = app_user_id() AND (SELECT app_can('activity.read_own')));
CREATE POLICY activity_windows_update ON activity_windows FOR UPDATE
    USING (tenant_id = app_tenant_id() AND user_id = app_user_id())
    WITH CHECK (tenant_id = app_tenant_id() AND user_id = app_user_id() AND (SELECT app_can('activity.read_own')));
CREATE POLICY activity_windows_delete ON activity_windows FOR DELETE
    USING (tenant_id = app_tenant_id() AND user_id = app_user_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON activity_windows TO rampart_runtime;

-- Content hashes are now the pipeline's (cleaned application, title and text), looked up to
-- drop identical content.
CREATE INDEX activity_content ON activity (tenant_id, user_id, content_hash);
