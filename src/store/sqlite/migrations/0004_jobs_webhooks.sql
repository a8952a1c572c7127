-- Run-to-completion tasks are found by run id; webhooks and their queued deliveries (the same
-- shape as PostgreSQL's 0005_jobs_webhooks.sql).
ALTER TABLE tasks ADD COLUMN run_id TEXT;
CREATE INDEX tasks_request_run ON tasks (request_id, run_id);
CREATE INDEX tasks_done ON tasks (live, done_at);

CREATE TABLE webhooks (
  id TEXT PRIMARY KEY,
  doc TEXT NOT NULL,
  created_at INTEGER NOT NULL
);

-- One row per (event, webhook), written in the transaction of the change. seq orders them;
-- a webhook's deliveries are sent oldest first, one at a time.
CREATE TABLE webhook_deliveries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  webhook_id TEXT NOT NULL,
  type TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  body TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_head ON webhook_deliveries (webhook_id, seq);
