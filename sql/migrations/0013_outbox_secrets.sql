-- A mail's context may carry a live credential (the one-time token and the link holding it). It is
-- needed only until the mail is sent: then, or once the token has expired unsent, it is scrubbed
-- (worker/jobs/email.py, worker/jobs/outbox.py). Numbered 0013 after the hardening issue,
-- leaving room for the migrations other work adds meanwhile.
ALTER TABLE email_outbox ADD COLUMN secrets_expire_at timestamptz;

-- Rows already sent or failed never needed their token again.
UPDATE email_outbox SET context = context - ARRAY['token', 'link']
WHERE status IN ('sent', 'failed') AND context ?| ARRAY['token', 'link'];

-- The retention job's two scans: unsent rows holding secrets, and finished rows by age.
CREATE INDEX email_outbox_secrets_idx ON email_outbox (secrets_expire_at)
    WHERE secrets_expire_at IS NOT NULL AND status IN ('pending', 'sending');
CREATE INDEX email_outbox_finished_idx ON email_outbox (created_at) WHERE status IN ('sent', 'failed');
