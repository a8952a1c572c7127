import type { Action } from '../deploy/types.ts';
import { placerFor, targetRequest } from '../deploy/phase.ts';
import { isLive, type TaskRecord } from '../model.ts';
import { hostOf, isUnplaced, type Placer } from '../placement.ts';
import { createTask, markCleanup, runDeploy } from '../tasks.ts';
import type { TaskView } from '../task-view.ts';
import type { RequestChanges, RequestContext } from './context.ts';

/**
 * Part 1b: tasks that have not started and wait for a host.
 *
 * - A task no host could take (its host part is UNPLACED) gets one as soon as one fits: a new
 *   record on that host takes its place and the unplaced record, which never ran and holds
 *   nothing, is deleted (Singularity's pending task becoming a task with a host). One that
 *   still fits nowhere keeps waiting, with the current reason; the request is looked at again
 *   after capacityRetryMillis.
 * - A task placed on a host that can no longer run it — one removed from the configuration, or
 *   decommissioning — and not started yet is cleaned up at once (RESCHEDULED): nothing ran, and
 *   the parts after this one place its instance again.
 * Only tasks persisted before this step are looked at: the ones created in it were just placed.
 * At most `budget` records are created (the pass's launch batch); the rest in the next pass, at once.
 */
export function placeWaitingTasks(ctx: RequestContext, tasks: TaskView, budget: number): RequestChanges & { deleted: string[] } {
  const { obs, now } = ctx;
  const known = new Map(obs.hosts.map((h) => [h.id, h]));
  const changes: TaskRecord[] = [];
  const actions: Action[] = [];
  const deleted: string[] = [];
  const taken = tasks.ids();
  let waiting = false;
  let again = false;
  let placer: Placer | undefined;
  for (const original of obs.tasks) {
    // Cheap first: most tasks have started (a handle is never taken away within a step).
    if (original.handle !== undefined || !isLive(original.state)) continue;
    const t = tasks.get(original.taskId.id);
    if (!t || !isLive(t.state) || t.cleanup || t.handle !== undefined) continue;
    if (!isUnplaced(t)) {
      const host = hostOf(t);
      const h = host === undefined ? undefined : known.get(host);
      if (h && h.adminState !== 'DECOMMISSIONING' && h.adminState !== 'DECOMMISSIONED') continue;
      const why = h ? `host ${h.id} is ${h.adminState}` : `host ${host} is not configured any more`;
      const marked = markCleanup(t, 'RESCHEDULED', now, `${why}; placed again`);
      if (marked) changes.push(marked);
      continue;
    }
    const deploy = [obs.pendingDeploy, obs.activeDeploy].find((d) => d?.id === t.taskId.deployId);
    if (!deploy) continue;
    if (deleted.length >= budget) {
      again = true;
      break;
    }
    placer ??= placerFor(obs, tasks.with(changes), targetRequest(obs).instances);
    const need = runDeploy(deploy, t.run);
    const where =
      deploy.id === obs.pendingDeploy?.id
        ? placer.place(need)
        : placer.place(need, { request: obs.request, instances: obs.request.instances });
    if (!where.ok) {
      waiting = true;
      if (t.waitingReason !== where.reason) changes.push({ ...t, waitingReason: where.reason });
      continue;
    }
    // A job's run keeps what it was started for (its trigger, run id, arguments).
    const fresh = createTask(deploy, t.taskId.instanceNo, now, taken, where);
    const placed = t.run ? { ...fresh, run: t.run } : fresh;
    taken.add(placed.taskId.id);
    changes.push(placed);
    deleted.push(t.taskId.id);
    actions.push({ kind: 'startTask', taskId: placed.taskId.id });
  }
  const wakeAt = again ? now : waiting ? now + obs.settings.capacityRetryMillis : undefined;
  return { tasks: changes, actions, deleted, ...(wakeAt !== undefined ? { wakeAt } : {}) };
}
