-- Hosts: the operator's state of each host (ACTIVE, FROZEN, DECOMMISSIONING...) and its history.
CREATE TABLE hosts (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  doc TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);

-- Small facts about this installation (e.g. the id its Docker containers are labelled with).
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
