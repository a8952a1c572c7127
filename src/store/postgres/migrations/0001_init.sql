-- The same tables as SQLite's 0001_init.sql: documents as JSON text, the columns beside them are
-- what queries filter on. `seq` orders rows by insertion (SQLite's rowid).
CREATE TABLE requests (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  doc TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);

CREATE TABLE deploys (
  seq BIGSERIAL NOT NULL,
  request_id TEXT NOT NULL,
  id TEXT NOT NULL,
  doc TEXT NOT NULL,
  message TEXT,
  created_at BIGINT NOT NULL,
  result_state TEXT,
  result TEXT,
  progress TEXT,
  PRIMARY KEY (request_id, id)
);

CREATE TABLE pending_deploys (
  request_id TEXT PRIMARY KEY,
  deploy_id TEXT NOT NULL,
  doc TEXT NOT NULL
);

CREATE TABLE tasks (
  seq BIGSERIAL NOT NULL,
  id TEXT PRIMARY KEY,
  request_id TEXT NOT NULL,
  deploy_id TEXT NOT NULL,
  live SMALLINT NOT NULL,
  done_at BIGINT,
  doc TEXT NOT NULL
);
CREATE INDEX tasks_request_live ON tasks (request_id, live);
CREATE INDEX tasks_live ON tasks (live);
CREATE INDEX tasks_seq ON tasks (seq);
