-- Projects and sharing: every task lives in a project; people see a project's tasks through their
-- membership row. The rights themselves are decided in shared/rights.py (one join on project_members).

-- Enum order is rank order: `role >= 'editor'` is the whole "at least editor" test.
CREATE TYPE project_role AS ENUM ('viewer', 'editor', 'admin', 'owner');

CREATE TABLE projects (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    color        text CHECK (color ~ '^#[0-9a-f]{6}$'),
    is_inbox     boolean NOT NULL DEFAULT false,
    -- The one member with role 'owner' (kept equal by shared/projects.py in the same transaction).
    owner_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    archived_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    version      integer NOT NULL DEFAULT 1,
    CONSTRAINT projects_inbox_not_archived CHECK (NOT (is_inbox AND archived_at IS NOT NULL))
);
-- One Inbox per account; also the lookup of "my Inbox" when a task names no project.
CREATE UNIQUE INDEX projects_inbox_key ON projects (owner_id) WHERE is_inbox;

CREATE TABLE project_members (
    project_id  bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        project_role NOT NULL,
    joined_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
-- "My projects": the list's membership side, and every rights join reads one entry of the primary key.
CREATE INDEX project_members_user_idx ON project_members (user_id, project_id) INCLUDE (role);
-- Exactly one owner per project, whatever two admins do at once.
CREATE UNIQUE INDEX project_members_one_owner ON project_members (project_id) WHERE role = 'owner';

-- Invitations: the token is stored only as its SHA-256 (like the one-time tokens); single use.
CREATE TABLE project_invitations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id   bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    email        text NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    role         project_role NOT NULL CHECK (role <> 'owner'),
    token_hash   bytea NOT NULL UNIQUE,
    invited_by   bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz,
    accepted_by  bigint REFERENCES users (id) ON DELETE SET NULL,
    revoked_at   timestamptz
);
CREATE INDEX project_invitations_pending_idx ON project_invitations (project_id, id)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

ALTER TABLE users ADD COLUMN email_notifications boolean NOT NULL DEFAULT true;

-- An account's Inbox is made by the same INSERT that makes the account (any path: API, CLI,
-- bootstrap, a test's raw INSERT), so no account ever exists without one.
CREATE FUNCTION users_make_inbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE inbox bigint;
BEGIN
    INSERT INTO projects (name, is_inbox, owner_id) VALUES ('Inbox', true, NEW.id) RETURNING id INTO inbox;
    INSERT INTO project_members (project_id, user_id, role) VALUES (inbox, NEW.id, 'owner');
    RETURN NULL;
END $$;
CREATE TRIGGER users_make_inbox AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION users_make_inbox();

-- Every existing account gets its Inbox now.
INSERT INTO projects (name, is_inbox, owner_id, created_at) SELECT 'Inbox', true, u.id, u.created_at FROM users AS u;
INSERT INTO project_members (project_id, user_id, role, joined_at)
SELECT p.id, p.owner_id, 'owner', p.created_at FROM projects AS p WHERE p.is_inbox;

-- owner_id stays: it is the task's creator. assignee_id is a member of the task's project
-- (checked by shared/tasks.py in the writing statement; cleared when a move leaves it outside).
ALTER TABLE tasks ADD COLUMN project_id bigint REFERENCES projects (id) ON DELETE CASCADE;
ALTER TABLE tasks ADD COLUMN assignee_id bigint REFERENCES users (id) ON DELETE SET NULL;
ALTER TABLE tasks ADD COLUMN comment_count integer NOT NULL DEFAULT 0;
UPDATE tasks AS t SET project_id = p.id FROM projects AS p WHERE p.owner_id = t.owner_id AND p.is_inbox;

-- A task inserted without a project goes to its creator's Inbox (the API's default, and what a raw
-- INSERT written before projects existed still means).
CREATE FUNCTION tasks_default_project() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.project_id IS NULL THEN
        SELECT p.id INTO NEW.project_id FROM projects AS p WHERE p.owner_id = NEW.owner_id AND p.is_inbox;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER tasks_default_project BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION tasks_default_project();
ALTER TABLE tasks ALTER COLUMN project_id SET NOT NULL;

-- The task indexes, led by project_id: a member's listing reads each of their projects' entries in
-- order (shared/tasks.py, one LATERAL per membership), never anyone else's.
CREATE INDEX tasks_project_created_idx ON tasks (project_id, created_at, id);
CREATE INDEX tasks_project_updated_idx ON tasks (project_id, updated_at, id);
CREATE INDEX tasks_project_priority_idx ON tasks (project_id, priority, id) INCLUDE (status, due_at, completed_at);
CREATE INDEX tasks_project_due_idx ON tasks (project_id, COALESCE(due_at, 'infinity'::timestamptz), id);
CREATE INDEX tasks_project_tags_idx ON tasks USING gin (project_id, tags);
CREATE INDEX tasks_project_search_idx ON tasks USING gin (project_id, (title || ' ' || description) gin_trgm_ops);
CREATE INDEX tasks_assignee_idx ON tasks (assignee_id) WHERE assignee_id IS NOT NULL;
-- The creator-led indexes stay only where something still reads by creator (ON DELETE CASCADE of a user).
DROP INDEX tasks_owner_updated_idx;
DROP INDEX tasks_owner_priority_idx;
DROP INDEX tasks_owner_due_idx;
DROP INDEX tasks_owner_tags_idx;
DROP INDEX tasks_owner_search_idx;

CREATE TABLE comments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    author_id   bigint REFERENCES users (id) ON DELETE SET NULL,
    body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 10000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- A task's comments, oldest first, keyset on id.
CREATE INDEX comments_task_idx ON comments (task_id, id);
