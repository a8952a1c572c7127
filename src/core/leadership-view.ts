// What the API says about leadership: one definition for the server that answers and the
// clients (CLI, UI) that read it, so the two cannot drift apart. Types only.

export interface LeaderView {
  /** the server that answered is the leader */
  self: boolean;
  id: string;
  /** its API URL */
  url: string;
  /** since when it leads (millis) */
  since: number;
  /** the lease's fencing token */
  epoch: number;
  expiresAt: number;
}

/** One scheduler sharing the store, with its last heartbeat. */
export interface SchedulerEntry {
  id: string;
  url: string;
  hostname: string;
  pid: number;
  version: string;
  startedAt: number;
  heartbeatAt: number;
  heartbeatAgeMs: number;
  /** heartbeat within three renewal intervals */
  alive: boolean;
  leader: boolean;
  self: boolean;
}
