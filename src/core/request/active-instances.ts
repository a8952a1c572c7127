import { placerFor } from '../deploy/phase.ts';
import type { Action } from '../deploy/types.ts';
import { MAX_PORT_IN_USE_RETRIES } from '../deploy/failures.ts';
import { isLive, type Deploy, type RequestRecord, type TaskRecord } from '../model.ts';
import { hostOf, type Placer } from '../placement.ts';
import { createTask, healthy, inLb, markCleanup, serving } from '../tasks.ts';
import type { TaskView } from '../task-view.ts';
import type { RequestChanges, RequestContext } from './context.ts';

type Backoff = NonNullable<RequestRecord['backoff']>;

/**
 * Part 2: the active deploy's instances. Serving tasks whose instance is not desired are
 * cleaned up, and so are unhealthy ones (failed checks at startup or while running), which are
 * then replaced like a crash. Each desired instance gets a serving task: a missing one is started
 * (after a crash-loop backoff; a task lost with its host is no crash and is replaced at once, and
 * a port another process took is retried at once a few times); a bounce, a kill-with-replacement
 * or a decommission of its host starts a replacement, and the older serving tasks of that
 * instance are cleaned up once the newest is healthy (and in the LB). New tasks go where
 * placement puts them (or wait for a host, saying why).
 *
 * At most `budget` task records are created; the instances left without one are started in the
 * next pass, at once (`deferred`), and so a request of any size is walked in bounded work: only
 * instance numbers up to the last one started, plus those that have tasks or a backoff.
 */
export function reconcileActiveInstances(
  ctx: RequestContext,
  record: RequestRecord,
  tasks: TaskView,
  activeDeploy: Deploy | undefined,
  budget: number,
): RequestChanges & { record: RequestRecord; created: number; deferred: boolean } {
  const { now, obs, activeId } = ctx;
  const changes: TaskRecord[] = [];
  const actions: Action[] = [];
  let wakeAt: number | undefined;
  const wake = (at: number) => (wakeAt = wakeAt === undefined ? at : Math.min(wakeAt, at));

  for (const t of tasks.ofDeploy(activeId)) {
    if (!serving(t)) continue;
    // Unhealthy (at startup, or while running after failed checks in a row): out of the LB at
    // once, then stopped, and replaced below as a crash — counted in the crash-loop backoff.
    const marked = !ctx.isDesired(t.taskId.instanceNo)
      ? markCleanup(t, ctx.cleanupReason(t), now)
      : t.health.state === 'UNHEALTHY'
        ? markCleanup(t, 'UNHEALTHY', now, t.health.message ?? 'unhealthy')
        : undefined;
    if (marked) changes.push(marked);
  }
  const view = tasks.with(changes);

  const byInstanceNo = new Map<number, TaskRecord[]>();
  for (const t of view.ofDeploy(activeId)) {
    const mine = byInstanceNo.get(t.taskId.instanceNo);
    if (mine) mine.push(t);
    else byInstanceNo.set(t.taskId.instanceNo, [t]);
  }
  const backoff: Backoff = { ...(record.backoff ?? {}) };
  let backoffChanged = false;
  const taken = view.ids();
  let created = 0;
  let deferred = false;
  let placer: Placer | undefined;
  const start = (instanceNo: number): TaskRecord | undefined => {
    if (!activeDeploy) return undefined;
    if (created >= budget) {
      deferred = true;
      return undefined;
    }
    placer ??= placerFor(obs, tasks.with(changes), record.request.instances, record.request);
    const where = placer.place(activeDeploy);
    const task = createTask(activeDeploy, instanceNo, now, taken, where.ok ? where : { waiting: where.reason });
    taken.add(task.taskId.id);
    changes.push(task);
    if (where.ok) actions.push({ kind: 'startTask', taskId: task.taskId.id });
    created += 1;
    return task;
  };
  const decommissioning = new Set(obs.hosts.filter((h) => h.adminState === 'DECOMMISSIONING').map((h) => h.id));
  const onDecommissioning = (t: TaskRecord) => {
    const host = hostOf(t);
    return host !== undefined && decommissioning.has(host);
  };
  const requireLb = (t: TaskRecord) => !ctx.lbEnabled || inLb(t);
  const resetMillis = obs.settings.backoffMaxMillis;

  const known = [...byInstanceNo.keys(), ...Object.keys(backoff).map(Number)];
  const walk = desiredInstances(ctx, record.request.instances, known, {
    exhausted: () => created >= budget || !activeDeploy,
    skipped: (from, to) => {
      if (activeDeploy && ctx.anyDesired(from, to)) deferred = true;
    },
  });
  for (const n of walk) {
    const mine = byInstanceNo.get(n) ?? [];
    // The newest serving task is the instance's; one on a decommissioning host only if it is the last.
    const servingNow = mine.filter(serving);
    if (servingNow.length > 1) {
      servingNow.sort((a, b) => Number(onDecommissioning(a)) - Number(onDecommissioning(b)) || b.taskId.startedAt - a.taskId.startedAt);
    }
    let current = servingNow[0];
    const key = String(n);
    // A task that served for a whole backoff window ends the crash loop.
    if (current && healthy(current) && backoff[key]) {
      const servedSince = current.health.healthyAt ?? now;
      if (now - servedSince >= resetMillis) {
        delete backoff[key];
        backoffChanged = true;
      } else {
        wake(servedSince + resetMillis);
      }
    }
    if (!current) {
      const crashed = mine
        .filter(crashedOut)
        .sort((a, b) => crashedAt(b, now) - crashedAt(a, now) || b.taskId.startedAt - a.taskId.startedAt)[0];
      const portRetries = backoff[key]?.portInUse ?? 0;
      if (crashed && backoff[key]?.lastTaskId !== crashed.taskId.id && crashed.portInUse && portRetries < MAX_PORT_IN_USE_RETRIES) {
        // A port another process took is not a crash of the task: start it again at once, on other ports.
        backoff[key] = {
          failures: backoff[key]?.failures ?? 0,
          until: backoff[key]?.until ?? 0,
          lastTaskId: crashed.taskId.id,
          portInUse: portRetries + 1,
        };
        backoffChanged = true;
      } else if (crashed && backoff[key]?.lastTaskId !== crashed.taskId.id) {
        const at = crashedAt(crashed, now);
        const served = crashed.health.healthyAt === undefined ? 0 : at - crashed.health.healthyAt;
        const failures = served >= resetMillis ? 1 : (backoff[key]?.failures ?? 0) + 1;
        const delay = failures <= 1 ? 0 : Math.min(obs.settings.backoffBaseMillis * 2 ** (failures - 2), obs.settings.backoffMaxMillis);
        backoff[key] = { failures, until: at + delay, lastTaskId: crashed.taskId.id };
        backoffChanged = true;
      }
      const until = backoff[key]?.until ?? 0;
      if (now < until) {
        wake(until);
        continue;
      }
      current = start(n);
      if (!current) continue;
    } else if (
      (record.bounce && current.taskId.startedAt < record.bounce.startedAt) ||
      current.replaceRequested ||
      onDecommissioning(current)
    ) {
      current = start(n) ?? current;
    }
    // Older serving tasks of the same instance (bounce, kill with replacement, decommission) go
    // once the newest serves.
    if (!current || !healthy(current) || !requireLb(current)) continue;
    for (const t of servingNow) {
      if (t.taskId.id === current.taskId.id) continue;
      const why = onDecommissioning(t) ? 'DECOMMISSIONING' : record.bounce ? 'BOUNCING' : 'USER_REQUESTED';
      const marked = markCleanup(t, why, now, why === 'DECOMMISSIONING' ? `host ${hostOf(t)} is decommissioning` : undefined);
      if (marked) changes.push(marked);
    }
  }
  if (deferred) wake(now);

  let next = record;
  // The bounce is over once no serving task of the active deploy predates it.
  const bounce = record.bounce;
  if (
    bounce &&
    !view
      .with(changes)
      .ofDeploy(activeId)
      .some((t) => serving(t) && t.taskId.startedAt < bounce.startedAt)
  ) {
    next = { ...next };
    delete next.bounce;
  }
  if (backoffChanged) next = { ...next, backoff };
  return { record: next, tasks: changes, actions, ...(wakeAt !== undefined ? { wakeAt } : {}), created, deferred };
}

/**
 * Desired instance numbers, ascending. Once no more tasks may be created, only the numbers in
 * `known` (those with tasks or a backoff) are still visited; the ranges passed over are told.
 */
function* desiredInstances(
  ctx: RequestContext,
  instances: number,
  known: number[],
  on: { exhausted: () => boolean; skipped: (from: number, to: number) => void },
): Generator<number> {
  const rest = [...new Set(known)].sort((a, b) => a - b);
  let k = 0;
  for (let n = 1; n <= instances; n++) {
    if (on.exhausted()) {
      while (k < rest.length && (rest[k] as number) < n) k++;
      const jump = rest[k] ?? instances + 1;
      if (jump > n) on.skipped(n, Math.min(jump, instances + 1) - 1);
      if (jump > instances) return;
      n = jump;
    }
    if (ctx.isDesired(n)) yield n;
  }
}

/** Ended on its own, or found unhealthy: a crash of its instance (the crash-loop backoff counts it). */
function crashedOut(t: TaskRecord): boolean {
  if (t.lostWithHost !== undefined) return false;
  return (!isLive(t.state) && !t.cleanup) || t.cleanup?.reason === 'UNHEALTHY';
}

function crashedAt(t: TaskRecord, now: number): number {
  return t.cleanup?.reason === 'UNHEALTHY' ? t.cleanup.timestamp : (t.doneAt ?? now);
}
