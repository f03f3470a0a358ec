-- Webhooks (shared/webhooks.py): a user's subscription to the change feed, delivered by the worker pool
-- following Standard Webhooks. The secret is kept encrypted (AES-GCM, key derived from SECRET_KEY).
CREATE TABLE webhooks (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url            text NOT NULL CHECK (length(url) <= 2000),
    events         text[] NOT NULL,
    project_id     bigint REFERENCES projects (id) ON DELETE CASCADE,
    active         boolean NOT NULL DEFAULT true,
    secret_sealed  bytea NOT NULL,
    -- The first failure of the current run of failures; 3 days of them disable the webhook.
    failing_since  timestamptz,
    disabled_reason text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_owner_idx ON webhooks (owner_id, id);
CREATE INDEX webhooks_active_idx ON webhooks (project_id) WHERE active;

-- One row per (webhook, event): the fan-out inserts it (at least once, never twice), the deliverer sends it
-- until a 2xx or until it gives up. `msg_id` is the webhook-id header, the same on every attempt.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id       bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id         bigint,
    event_type       text NOT NULL,
    project_id       bigint,
    msg_id           text NOT NULL UNIQUE,
    payload          jsonb,  -- only for a ping; an event's body is built from its feed row when sent
    attempt          integer NOT NULL DEFAULT 0,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    response_status  integer,
    error            text,
    duration_ms      integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz DEFAULT now()
);
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (webhook_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_list_idx ON webhook_deliveries (webhook_id, id DESC);
CREATE INDEX webhook_deliveries_at_idx ON webhook_deliveries (created_at);

-- Where the fan-out has read the change feed up to (the same (xid, id) position as /changes).
CREATE TABLE webhook_fanout (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    xid       xid8 NOT NULL,
    id        bigint NOT NULL
);
