-- Idempotency-Key records: the first response to (user, scope, key), replayed for 24 hours.
-- Only finished requests are stored, in the same transaction as the work they describe, so a crash
-- leaves either both or neither. "Still running" is a transaction-scoped advisory lock, not a row:
-- it disappears with the transaction, so a killed request never blocks its retries.
CREATE TABLE idempotency_keys (
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope         text NOT NULL,  -- the endpoint, e.g. 'POST /api/v1/tasks'
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash  bytea NOT NULL,  -- SHA-256 of the canonical JSON body: another body is a 422
    status        smallint NOT NULL,
    headers       jsonb NOT NULL DEFAULT '{}',
    body          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (user_id, scope, key)
);
-- The cleanup cron deletes by age.
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
