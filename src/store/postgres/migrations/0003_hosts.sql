-- SQLite's 0002_hosts.sql: each host's operator state and its history, and small facts about
-- this installation (e.g. the id its Docker containers are labelled with).
CREATE TABLE hosts (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  doc TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);

CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
