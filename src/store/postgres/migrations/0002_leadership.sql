-- Several schedulers, one leader. The lease is one row; its epoch is the fencing token every
-- write of the leader's loop carries (checked in the write's own transaction). Times are the
-- database's clock, so the schedulers' clocks never have to agree.
CREATE TABLE leader_lease (
  id SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  holder TEXT NOT NULL,
  epoch BIGINT NOT NULL,
  url TEXT NOT NULL,
  since TIMESTAMPTZ NOT NULL,
  renewed_at TIMESTAMPTZ NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);

-- Every server sharing the store, with its heartbeat (GET /api/state "schedulers").
CREATE TABLE schedulers (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  hostname TEXT NOT NULL,
  machine TEXT NOT NULL,
  pid INTEGER NOT NULL,
  data_dir TEXT NOT NULL,
  version TEXT NOT NULL,
  started_at TIMESTAMPTZ NOT NULL,
  heartbeat_at TIMESTAMPTZ NOT NULL
);
