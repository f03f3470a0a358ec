-- Jobs users poll: CSV/PDF exports and PDF reports, done by the worker pool.
-- The row is the durable record, not the arq queue: it is written in the request's transaction, and
-- the sweeper re-enqueues any row whose queue entry was lost (web died after the commit, Redis
-- flushed, a worker killed). `attempts` is the claim token: only the run holding the latest claim
-- may report progress or finish the job, so a duplicate run can never produce a second result.
CREATE TABLE jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('export', 'summary', 'admin_activity')),
    format        text NOT NULL CHECK (format IN ('csv', 'pdf')),
    params        jsonb NOT NULL DEFAULT '{}',  -- export filters + sort, or a report's from/to
    status        text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    progress      real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    row_count     integer,
    size_bytes    bigint,
    error         text,  -- user-readable; details stay in the worker's log under request_id
    storage_key   text,  -- NULL once the cleanup cron has deleted the file
    attempts      integer NOT NULL DEFAULT 0,  -- claims so far
    enqueues      integer NOT NULL DEFAULT 0,  -- re-enqueues by the sweeper; names the current arq job
    request_id    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    heartbeat_at  timestamptz,  -- a live run beats every few seconds; a stale one lost its worker
    finished_at   timestamptz,
    expires_at    timestamptz
);
-- The caller's jobs, newest first: keyset on id (identity, so newer rows always sort first).
CREATE INDEX jobs_owner_idx ON jobs (owner_id, id);
-- The sweeper: unfinished rows by age.
CREATE INDEX jobs_unfinished_idx ON jobs (created_at) WHERE status IN ('queued', 'running');
-- The cleanup cron: expired files, then old rows.
CREATE INDEX jobs_expires_idx ON jobs (expires_at) WHERE expires_at IS NOT NULL;

-- The due-soon reminder cron looks across every owner for open tasks due in the next 24 hours;
-- the per-owner due index cannot serve that, this small partial one does.
CREATE INDEX tasks_due_open_idx ON tasks (due_at) WHERE status <> 'done' AND due_at IS NOT NULL;
