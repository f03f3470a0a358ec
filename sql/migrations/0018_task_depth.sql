-- Subtasks, recurring tasks, attachments and the trash.

ALTER TABLE tasks ADD COLUMN parent_id bigint REFERENCES tasks (id) ON DELETE CASCADE;
ALTER TABLE tasks ADD COLUMN recurrence text CHECK (length(recurrence) <= 500);
ALTER TABLE tasks ADD COLUMN attachment_count integer NOT NULL DEFAULT 0;
-- In the trash since trashed_at; trash_root is the task whose delete put it there (itself, or the
-- ancestor it went along with): a restore brings back exactly the rows of one delete.
ALTER TABLE tasks ADD COLUMN trashed_at timestamptz;
ALTER TABLE tasks ADD COLUMN trash_root bigint;
ALTER TABLE tasks ADD CONSTRAINT tasks_trash_check CHECK ((trashed_at IS NULL) = (trash_root IS NULL));
-- A recurring task always has a due date to move (the API answers 422 before this can fire).
ALTER TABLE tasks ADD CONSTRAINT tasks_recurrence_due_check CHECK (recurrence IS NULL OR due_at IS NOT NULL);

-- The trash is invisible by construction: the table becomes all_tasks and `tasks` is the view of the
-- rows not in the trash. Every existing read (lists, stats, exports, comments, reminders, pages) keeps
-- saying `tasks` and so can never show a trashed row; only shared/trash.py and the purge job read
-- all_tasks. The view is simple, so PostgreSQL writes through it (INSERT/UPDATE/DELETE ... RETURNING,
-- FOR UPDATE), and the planner folds it into each query: the indexes below are used as before.
ALTER TABLE tasks RENAME TO all_tasks;
CREATE VIEW tasks AS
SELECT id, owner_id, title, description, status, priority, due_at, tags, created_at, updated_at, completed_at,
       version, project_id, assignee_id, comment_count, parent_id, recurrence, attachment_count
FROM all_tasks WHERE trashed_at IS NULL;
-- A write through the view uses these, as a write to the table would.
ALTER VIEW tasks ALTER COLUMN description SET DEFAULT '';
ALTER VIEW tasks ALTER COLUMN status SET DEFAULT 'todo';
ALTER VIEW tasks ALTER COLUMN priority SET DEFAULT 'medium';
ALTER VIEW tasks ALTER COLUMN tags SET DEFAULT '{}';
ALTER VIEW tasks ALTER COLUMN created_at SET DEFAULT now();
ALTER VIEW tasks ALTER COLUMN updated_at SET DEFAULT now();
ALTER VIEW tasks ALTER COLUMN version SET DEFAULT 1;
ALTER VIEW tasks ALTER COLUMN comment_count SET DEFAULT 0;
ALTER VIEW tasks ALTER COLUMN attachment_count SET DEFAULT 0;

-- A task's direct subtasks, and `parent_id=none` (top-level tasks) in a project's listing.
CREATE INDEX tasks_parent_idx ON all_tasks (parent_id, created_at, id) WHERE parent_id IS NOT NULL;
CREATE INDEX tasks_project_top_created_idx ON all_tasks (project_id, created_at, id) WHERE parent_id IS NULL;
-- The trash of a project, newest first, and the purge's oldest-first walk.
CREATE INDEX tasks_trash_idx ON all_tasks (project_id, trashed_at, id) WHERE trashed_at IS NOT NULL AND trash_root = id;
CREATE INDEX tasks_trash_age_idx ON all_tasks (trashed_at) WHERE trashed_at IS NOT NULL AND trash_root = id;
CREATE INDEX tasks_trash_root_idx ON all_tasks (trash_root) WHERE trash_root IS NOT NULL;

-- The tree rules, where no code path (or two at once) can get around them: the parent is in the same
-- project and not in the trash, no cycle, at most 4 levels. Each tree change first locks its project's
-- row (FOR NO KEY UPDATE: task inserts' foreign-key checks still pass), so two concurrent changes in
-- one project are checked one after the other, the second against the first's committed tree (in READ
-- COMMITTED each statement here takes a fresh snapshot after the lock). It runs AFTER the statement's
-- rows are written, so a subtree moved by one UPDATE is checked in its final state.
CREATE FUNCTION tasks_check_tree() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parent all_tasks%ROWTYPE;
    above integer;
    below integer;
    looped boolean;
BEGIN
    IF NEW.parent_id IS NULL OR NEW.trashed_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM projects WHERE id = NEW.project_id FOR NO KEY UPDATE;
    SELECT * INTO parent FROM all_tasks WHERE id = NEW.parent_id;
    IF NOT FOUND OR parent.trashed_at IS NOT NULL THEN
        RAISE EXCEPTION 'The parent task does not exist' USING ERRCODE = 'check_violation',
            CONSTRAINT = 'tasks_parent_missing';
    END IF;
    IF parent.project_id <> NEW.project_id THEN
        RAISE EXCEPTION 'The parent task is in another project' USING ERRCODE = 'check_violation',
            CONSTRAINT = 'tasks_parent_project';
    END IF;
    -- Up from the parent: its ancestors (a walk that meets this task again is a cycle). Bounded at 6
    -- steps: a longer chain already breaks the 4-level rule.
    WITH RECURSIVE up AS (
        SELECT t.id, t.parent_id, 1 AS n FROM all_tasks AS t WHERE t.id = NEW.parent_id
        UNION ALL
        SELECT t.id, t.parent_id, up.n + 1 FROM all_tasks AS t JOIN up ON t.id = up.parent_id
        WHERE up.n < 6 AND up.id <> NEW.id
    )
    SELECT max(n), bool_or(id = NEW.id) INTO above, looped FROM up;
    IF looped THEN
        RAISE EXCEPTION 'A task cannot be its own ancestor' USING ERRCODE = 'check_violation',
            CONSTRAINT = 'tasks_parent_cycle';
    END IF;
    WITH RECURSIVE down AS (
        SELECT t.id, 1 AS n FROM all_tasks AS t WHERE t.id = NEW.id
        UNION ALL
        SELECT t.id, down.n + 1 FROM all_tasks AS t JOIN down ON t.parent_id = down.id
        WHERE down.n < 6 AND t.trashed_at IS NULL
    )
    SELECT max(n) INTO below FROM down;
    IF above + below > 4 THEN
        RAISE EXCEPTION 'Subtasks nest at most 4 levels' USING ERRCODE = 'check_violation',
            CONSTRAINT = 'tasks_parent_depth';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_check_tree AFTER INSERT OR UPDATE OF parent_id, project_id, trashed_at ON all_tasks
FOR EACH ROW EXECUTE FUNCTION tasks_check_tree();

-- Attachments: the row is the truth; the bytes live in the export storage under storage_key.
CREATE TABLE attachments (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id       bigint NOT NULL REFERENCES all_tasks (id) ON DELETE CASCADE,
    filename      text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    content_type  text NOT NULL,
    size_bytes    bigint NOT NULL CHECK (size_bytes > 0),
    uploaded_by   bigint REFERENCES users (id) ON DELETE SET NULL,
    storage_key   text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachments_task_idx ON attachments (task_id, id);
CREATE INDEX attachments_uploader_idx ON attachments (uploaded_by) WHERE uploaded_by IS NOT NULL;

-- Files whose row went (a deleted attachment, task, project or purge): the cleanup job deletes each
-- object and then its row, so a retry deletes at most an object that is already gone.
CREATE TABLE attachment_garbage (
    storage_key  text PRIMARY KEY,
    queued_at    timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION attachments_collect() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO attachment_garbage (storage_key) VALUES (OLD.storage_key) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER attachments_collect AFTER DELETE ON attachments FOR EACH ROW EXECUTE FUNCTION attachments_collect();
