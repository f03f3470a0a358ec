-- Tasks: the hot path. Every index leads with owner_id, so each list query reads only the caller's
-- rows (and the table could later be sharded by owner without changing a query).

-- Trigram search backs `q` (substring, case-insensitive, any language; see docs/tasks.md).
-- btree_gin lets owner_id sit inside the same GIN index as the tags and the trigrams, so a tag
-- or text filter never touches other users' index entries. Both are trusted contrib extensions:
-- a database owner may create them without superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;

-- Enum order is sort order: `sort=priority` goes low → urgent by comparing the enum itself.
CREATE TYPE task_status AS ENUM ('todo', 'in_progress', 'done');
CREATE TYPE task_priority AS ENUM ('low', 'medium', 'high', 'urgent');

CREATE TABLE tasks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description   text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    status        task_status NOT NULL DEFAULT 'todo',
    priority      task_priority NOT NULL DEFAULT 'medium',
    due_at        timestamptz,
    tags          text[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 20),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    -- Bumped by every change; the ETag is "<id>-<version>", so If-Match is a plain integer compare.
    version       integer NOT NULL DEFAULT 1,
    -- The completed_at rule, enforced where no code path can forget it.
    CONSTRAINT tasks_completed_at_check CHECK ((status = 'done') = (completed_at IS NOT NULL))
);

-- One btree per sort key, each ending in id: keyset pagination compares (key, id) as a row, and
-- the same index is read forwards for `sort=x` and backwards for `sort=-x`. They also serve the
-- owner_id lookup of ON DELETE CASCADE.
CREATE INDEX tasks_owner_created_idx ON tasks (owner_id, created_at, id);
CREATE INDEX tasks_owner_updated_idx ON tasks (owner_id, updated_at, id);
-- INCLUDE makes GET /tasks/stats an index-only scan of the owner's entries.
CREATE INDEX tasks_owner_priority_idx ON tasks (owner_id, priority, id) INCLUDE (status, due_at, completed_at);
-- A missing due date sorts as +infinity (last for due_at, first for -due_at); writing the same
-- expression in the index and in the cursor comparison keeps the ordering total without NULL cases.
CREATE INDEX tasks_owner_due_idx ON tasks (owner_id, COALESCE(due_at, 'infinity'::timestamptz), id);

-- `tag=x` is `tags @> ARRAY[x]`.
CREATE INDEX tasks_owner_tags_idx ON tasks USING gin (owner_id, tags);
-- `q`: every word must occur in title or description. A space joins the two columns; words never
-- contain whitespace, so a word cannot match across the boundary.
CREATE INDEX tasks_owner_search_idx ON tasks USING gin (owner_id, (title || ' ' || description) gin_trgm_ops);
