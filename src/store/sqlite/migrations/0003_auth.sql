-- API tokens (only their SHA-256 is stored), the audit log of mutating calls, and who
-- started each deploy. Plain TEXT/INTEGER columns so the same shape ports to PostgreSQL.
CREATE TABLE tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  created_by TEXT,
  last_used_at INTEGER
);

CREATE TABLE audit (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  token_name TEXT,
  role TEXT,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  request_id TEXT,
  deploy_id TEXT,
  task_id TEXT,
  source TEXT NOT NULL,
  status INTEGER NOT NULL
);
CREATE INDEX audit_request ON audit (request_id, at);
CREATE INDEX audit_token ON audit (token_name, at);
CREATE INDEX audit_at ON audit (at);

ALTER TABLE deploys ADD COLUMN created_by TEXT;
