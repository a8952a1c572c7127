import { isLive, type TaskRecord } from '../model.ts';
import { hostOf, type HostSnapshot } from '../placement.ts';

/**
 * Part 0, before the deploy steps: every live task on a host that is UNREACHABLE (silent for
 * --host-unreachable-seconds) is TASK_LOST, so that the deploy and the steady state replace
 * it on other hosts under the usual rules (new tasks healthy and in the LB first; a dead task
 * leaves the LB at once). `lostWithHost` marks it: not a crash (no backoff), not the deploy's
 * failure. The runtime keeps what it held there until the host answers again and its
 * container is stopped (the executor's sweep), so nothing is placed on ports still in use.
 */
export function loseTasksOnSilentHosts(tasks: readonly TaskRecord[], hosts: readonly HostSnapshot[], now: number): TaskRecord[] {
  const silent = new Map(hosts.filter((h) => !h.reachable).map((h) => [h.id, h]));
  if (silent.size === 0) return [];
  const lost: TaskRecord[] = [];
  for (const t of tasks) {
    if (!isLive(t.state)) continue;
    const host = hostOf(t);
    const h = host === undefined ? undefined : silent.get(host);
    if (!h) continue;
    const message = `Lost with its host: host ${h.id} is UNREACHABLE${h.lastError ? ` (${h.lastError})` : ''}`;
    lost.push({
      ...t,
      state: 'TASK_LOST',
      doneAt: now,
      lostWithHost: h.id,
      updates: [...t.updates, { state: 'TASK_LOST', timestamp: now, message }],
    });
  }
  return lost;
}
