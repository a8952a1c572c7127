import type { Action } from '../deploy/types.ts';
import { isLive, type TaskRecord } from '../model.ts';
import { isUnplaced } from '../placement.ts';
import { touchesLb } from '../tasks.ts';
import type { TaskView } from '../task-view.ts';
import type { RequestChanges, RequestContext } from './context.ts';

/**
 * Part 5, at the edge: a task marked for cleanup is stopped once it is out of the LB (the LB
 * part issued its removal); a live task placed on a host whose runtime has not started it yet
 * (a crash between persist and start, or one waiting for room there) is started again. A task
 * no host took yet is the waiting part's. `starting`: tasks whose
 * start an earlier part of this step already asked for.
 */
export function cleanUp(ctx: RequestContext, tasks: TaskView, starting: ReadonlySet<string>): RequestChanges {
  const { now, obs } = ctx;
  const changes: TaskRecord[] = [];
  const actions: Action[] = [];
  let waitingForCapacity = false;
  for (const t of tasks.all()) {
    if (!isLive(t.state)) continue;
    if (t.cleanup) {
      if (ctx.lbEnabled && touchesLb(t)) continue; // leaves the LB first
      if (t.state !== 'TASK_KILLING') {
        changes.push({ ...t, state: 'TASK_KILLING', updates: [...t.updates, { state: 'TASK_KILLING', timestamp: now }] });
      }
      actions.push({ kind: 'stopTask', taskId: t.taskId.id, reason: t.cleanup.reason });
    } else if (t.handle === undefined && !isUnplaced(t) && !starting.has(t.taskId.id)) {
      actions.push({ kind: 'startTask', taskId: t.taskId.id });
      if (t.waitingReason) waitingForCapacity = true;
    }
  }
  return { tasks: changes, actions, ...(waitingForCapacity ? { wakeAt: now + obs.settings.capacityRetryMillis } : {}) };
}
