-- Transactional outbox: a mail is written in the same transaction as the change that causes it,
-- then sent by the worker. `status` makes a retried or duplicated job a no-op.
CREATE TABLE email_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint REFERENCES users (id) ON DELETE SET NULL,
    to_address  text NOT NULL,
    template    text NOT NULL,
    context     jsonb NOT NULL DEFAULT '{}',
    dedup_key   text UNIQUE,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    request_id  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    claimed_at  timestamptz,
    sent_at     timestamptz
);
-- The sweeper's query: unsent rows by age.
CREATE INDEX email_outbox_unsent_idx ON email_outbox (created_at) WHERE status IN ('pending', 'sending');
