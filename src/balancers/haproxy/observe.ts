// Passive protection, read back: HAProxy marks a server down after errors in a row (and up at
// its first good connect); a poll of `show stat` turns those status changes into upstream
// events, so the engine probes the task at once. No I/O here.
import type { UpstreamEvent } from '../types.ts';
import type { StatRow } from './runtime-api.ts';

/** A server Fledge knows, by `backend/server`. */
export interface ObservedServer {
  serviceId: string;
  taskId: string;
  /** a draining server going down is its drain, not a failure */
  draining: boolean;
}

/**
 * The events since the last poll. `lastStatus` (per `backend/server`) is updated in place:
 * servers no longer in HAProxy, or no longer Fledge's, are forgotten.
 */
export function upstreamEvents(
  rows: readonly StatRow[],
  known: ReadonlyMap<string, ObservedServer>,
  lastStatus: Map<string, string>,
): UpstreamEvent[] {
  const events: UpstreamEvent[] = [];
  const seen = new Set<string>();
  for (const row of rows) {
    const key = `${row.backend}/${row.server}`;
    const server = known.get(key);
    if (!server) continue;
    seen.add(key);
    const before = lastStatus.get(key);
    lastStatus.set(key, row.status);
    if (server.draining || before === row.status) continue;
    const { serviceId, taskId } = server;
    if (row.status.startsWith('DOWN') && !before?.startsWith('DOWN')) {
      const reason = row.checkStatus ? `haproxy marked it down (${row.checkStatus})` : 'haproxy marked it down';
      events.push({ kind: 'EJECTED', serviceId, taskId, failures: 0, reason });
    } else if (row.status.startsWith('UP') && before?.startsWith('DOWN')) {
      events.push({ kind: 'RESTORED', serviceId, taskId, failures: 0, reason: 'connect check passed' });
    }
  }
  for (const key of [...lastStatus.keys()]) if (!seen.has(key)) lastStatus.delete(key);
  return events;
}
