-- The change feed: one row per change, written in the change's own transaction (shared/events.py).
-- `xid` is the writing transaction's id; readers order by (xid, id) and only read below the oldest
-- transaction still running (pg_snapshot_xmin), which is why a cursor never skips or repeats
-- (the argument is in docs/changes.md).
CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    type        text NOT NULL,
    -- No foreign keys: `project.deleted` and `member.removed` must outlive what they are about.
    project_id  bigint NOT NULL,
    task_id     bigint,
    actor_id    bigint,
    data        jsonb NOT NULL,
    -- Users who must get this event although they are no longer members when it is read: the removed
    -- member of `member.removed`, every member of a deleted project for `project.deleted`.
    also        bigint[] NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now()
);
-- /changes walks each of the caller's projects in feed order; a project's activity reads it backwards.
CREATE INDEX events_project_feed_idx ON events (project_id, xid, id);
CREATE INDEX events_task_idx ON events (task_id, xid, id) WHERE task_id IS NOT NULL;
CREATE INDEX events_also_idx ON events USING gin (also) WHERE also <> '{}';
-- Retention deletes the oldest rows in batches.
CREATE INDEX events_at_idx ON events (at);

-- The highest feed position retention has deleted: a cursor below it may have missed events (410).
CREATE TABLE events_retention (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    xid         xid8 NOT NULL DEFAULT '0',
    id          bigint NOT NULL DEFAULT 0
);
INSERT INTO events_retention DEFAULT VALUES;
