-- Documents are stored as JSON; the columns beside them are what queries filter on.
CREATE TABLE requests (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  doc TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE deploys (
  request_id TEXT NOT NULL,
  id TEXT NOT NULL,
  doc TEXT NOT NULL,
  message TEXT,
  created_at INTEGER NOT NULL,
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
  id TEXT PRIMARY KEY,
  request_id TEXT NOT NULL,
  deploy_id TEXT NOT NULL,
  live INTEGER NOT NULL,
  done_at INTEGER,
  doc TEXT NOT NULL
);
CREATE INDEX tasks_request_live ON tasks (request_id, live);
CREATE INDEX tasks_live ON tasks (live);
