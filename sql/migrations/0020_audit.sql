-- The site audit log (shared/audit.py): security-relevant actions, append-only, kept AUDIT_RETENTION_DAYS.
-- Never a password, token or secret: `detail` holds only the names and values shared/audit.py allows.
CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type          text NOT NULL,
    actor_id      bigint,
    subject_type  text CHECK (subject_type IN ('user', 'project', 'webhook')),
    subject_id    bigint,
    ip            text,
    user_agent    text CHECK (length(user_agent) <= 500),
    request_id    text CHECK (length(request_id) <= 200),
    at            timestamptz NOT NULL DEFAULT now(),
    detail        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_newest_idx ON audit_log (id DESC);
CREATE INDEX audit_log_type_idx ON audit_log (type, id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id DESC);
CREATE INDEX audit_log_at_idx ON audit_log (at);

-- Append-only: no UPDATE ever; DELETE only by the retention job, which says so in its own transaction
-- (SET LOCAL taskdeck.audit_retention = 'on').
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('taskdeck.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
