/*
 * The request step of run-to-completion requests (SCHEDULED, ON_DEMAND, RUN_ONCE), pure. The
 * request step (../request/step.ts) hands these requests here; the long-running engine is not
 * involved. Its parts, in order:
 *
 * 0. A pending deploy succeeds at once (deploys.md §1: no canary, no health, no LB); apply-result
 *    makes it the active deploy, and the next run uses it. A cancel recorded before is a cancel.
 * 1. Ended runs are settled once: a failed run is retried (same parameters, same runId) while
 *    fewer than numRetriesOnFailure retries were made in a row — not a run killed by a user, a
 *    pause, a delete or a newer deploy, nor a run-now of a SCHEDULED request (as Singularity).
 * 2. Live runs: over taskExecutionTimeLimitMillis → killed (TASK_EXCEEDED_TIME_LIMIT); the
 *    request deleted → killed; paused, or of a deploy no longer active → may finish within
 *    killOldNonLongRunningTasksAfterMillis, then killed; SCHEDULED and running longer than
 *    expected (scheduledExpectedRuntimeMillis, else until its next due time) → reported once.
 * 3. New runs, only for an ACTIVE request with an active deploy:
 *    - SCHEDULED: at nextRunAt one run starts and nextRunAt moves to the first due time after
 *      now — so after downtime the missed due times make one catch-up run. A run still going
 *      at a due time: that due time is skipped (counted and noted), never run beside it.
 *    - queued runs (ON_DEMAND, and run-now of SCHEDULED): oldest first while fewer than
 *      `instances` runs are live; the others wait in the queue.
 *    - RUN_ONCE: one run when a deploy becomes active.
 * 4. Cleanup (../request/cleanup.ts): marked runs are stopped; unstarted ones are started.
 */
import type { Action, Decision, DeployResult, RequestObservation } from '../deploy/types.ts';
import {
  isLive,
  type CleanupReason,
  type Deploy,
  type JobState,
  type QueuedRun,
  type RequestRecord,
  type TaskRecord,
  type TaskRun,
} from '../model.ts';
import { MAX_PORT_IN_USE_RETRIES } from '../deploy/failures.ts';
import { placerFor } from '../deploy/phase.ts';
import { successfulExitCodes } from '../launch.ts';
import type { Placer } from '../placement.ts';
import { applyDeployResult } from '../request/apply-result.ts';
import type { PendingOutcome } from '../deploy/step.ts';
import type { JobNote, StepOutcome } from '../request/outcome.ts';
import { cleanUp } from '../request/cleanup.ts';
import { requestContext } from '../request/context.ts';
import { placeWaitingTasks } from '../request/waiting-tasks.ts';
import { createTask, markCleanup, runDeploy } from '../tasks.ts';
import { collapseChanges, TaskView } from '../task-view.ts';
import { nextRunAfter, scheduleOf, type Schedule } from './cron.ts';

/** Something the loop logs (a skipped due time, a retry, an overdue run). */

/** A job's step decides what a request's step does, and always says what to log. */
export interface JobStepOutcome extends Omit<StepOutcome, 'notes' | 'waiting'> {
  notes: readonly JobNote[];
}

export const DEFAULT_KILL_OLD_MILLIS = 24 * 3_600_000;

/** Kills that end a run for good: never retried. */
const NO_RETRY: ReadonlySet<CleanupReason> = new Set(['USER_REQUESTED', 'PAUSING', 'REQUEST_DELETING', 'DEPLOY_REPLACED']);

export function stepJobRequest(obs: RequestObservation, record: RequestRecord, now: number): JobStepOutcome {
  const notes: JobNote[] = [];
  const decisions: Decision[] = [];
  const pending = obs.pending ? endDeployAtOnce(obs, now) : ({ kind: 'UNCHANGED' } as const);
  if (pending.kind === 'ENDED') decisions.push(...pending.progress.decisionLog.slice(obs.pending?.progress.decisionLog.length ?? 0));

  const applied = applyDeployResult(obs, record, pending);
  let rec = applied.record;
  const active = applied.activeDeploy && applied.activeDeploy.id === rec.activeDeployId ? applied.activeDeploy : undefined;
  const request = rec.request;
  const jobs: JobState = { ...(rec.jobs ?? {}) };
  let tasks = TaskView.of(obs.tasks);
  const changes: TaskRecord[] = [];
  const actions: Action[] = [];
  let wakeAt: number | undefined;
  const wake = (at: number) => (wakeAt = wakeAt === undefined ? at : Math.min(wakeAt, at));
  const change = (t: TaskRecord) => {
    changes.push(t);
    tasks = tasks.with([t]);
  };
  const taken = tasks.ids();
  const deleted: string[] = [];
  // Runs already waiting for a host go first (the older wait); each keeps its run.
  const waitCtx = requestContext(obs, rec, now, undefined, undefined);
  const placed = placeWaitingTasks(waitCtx, tasks, Number.MAX_SAFE_INTEGER);
  for (const t of placed.tasks ?? []) change(t);
  actions.push(...(placed.actions ?? []));
  if (placed.wakeAt !== undefined) wake(placed.wakeAt);
  deleted.push(...placed.deleted);
  tasks = tasks.without(placed.deleted);
  for (const id of tasks.ids()) taken.add(id);
  let placer: Placer | undefined;
  const start = (deploy: Deploy, instanceNo: number, run: Omit<TaskRun, 'successfulExitCodes' | 'retry'> & { retry?: number }) => {
    placer ??= placerFor(obs, tasks, Math.max(1, request.instances), request);
    const where = placer.place(runDeploy(deploy, run));
    const task = createTask(deploy, instanceNo, now, taken, where.ok ? where : { waiting: where.reason });
    taken.add(task.taskId.id);
    const created: TaskRecord = { ...task, run: { ...run, retry: run.retry ?? 0, successfulExitCodes: [...successfulExitCodes(deploy)] } };
    change(created);
    if (where.ok) actions.push({ kind: 'startTask', taskId: created.taskId.id });
    else wake(now + obs.settings.capacityRetryMillis);
    return created;
  };
  const wanted = rec.state === 'ACTIVE' && active !== undefined;

  // 1. ended runs
  for (const t of tasks.all()) {
    if (isLive(t.state) || !t.run || t.run.settled) continue;
    change({ ...t, run: { ...t.run, settled: true } });
    const failed = t.state !== 'TASK_FINISHED';
    if (!failed) continue;
    const { settled: _s, overdue: _o, killAfter: _k, dueAt: _d, successfulExitCodes: _c, ...params } = t.run;
    // Lost with its host, or never started because its host went away: not the run's failure,
    // so it runs again elsewhere without using a retry.
    // So is a port taken by something else when it started (a few times, as for services).
    const portRetries = t.run.portRetries ?? 0;
    const portTaken = t.portInUse === true && !t.cleanup && portRetries < MAX_PORT_IN_USE_RETRIES;
    const hostGone =
      t.lostWithHost !== undefined && !t.cleanup
        ? `run lost with host ${t.lostWithHost}`
        : t.cleanup?.reason === 'RESCHEDULED'
          ? `run could not start on host ${t.taskId.host}`
          : portTaken
            ? `a port the run needed was taken (${portRetries + 1} of ${MAX_PORT_IN_USE_RETRIES})`
            : undefined;
    if (hostGone && wanted) {
      const again = start(active, t.taskId.instanceNo, {
        ...params,
        retryOf: t.taskId.id,
        ...(portTaken ? { portRetries: portRetries + 1 } : {}),
      });
      notes.push({ level: 'warn', msg: `${hostGone}; run again`, taskId: again.taskId.id, ...runIdOf(t.run) });
      continue;
    }
    const limit = request.numRetriesOnFailure ?? 0;
    const why = t.cleanup && NO_RETRY.has(t.cleanup.reason) ? `killed (${t.cleanup.reason})` : undefined;
    const immediate = request.requestType === 'SCHEDULED' && t.run.trigger === 'IMMEDIATE';
    if (why || immediate || t.run.retry >= limit || !wanted) {
      if (limit > 0 && !why && !immediate && t.run.retry >= limit) {
        notes.push({ level: 'warn', msg: `run failed after ${limit} retries; not retried again`, taskId: t.taskId.id, ...runIdOf(t.run) });
      }
      continue;
    }
    const retry = start(active, t.taskId.instanceNo, { ...params, trigger: 'RETRY', retry: t.run.retry + 1, retryOf: t.taskId.id });
    notes.push({
      level: 'info',
      msg: `run failed (${t.state}); retry ${t.run.retry + 1} of ${limit}`,
      taskId: retry.taskId.id,
      ...runIdOf(t.run),
    });
  }

  // 2. live runs
  const schedule = request.requestType === 'SCHEDULED' ? readSchedule(request, notes) : undefined;
  const zone = request.scheduleTimeZone ?? obs.settings.scheduleTimeZone ?? 'UTC';
  const killOld =
    request.killOldNonLongRunningTasksAfterMillis ?? obs.settings.killOldNonLongRunningTasksAfterMillis ?? DEFAULT_KILL_OLD_MILLIS;
  for (const t of tasks.all()) {
    if (!isLive(t.state) || !t.run || t.cleanup) continue;
    const started = t.runningAt ?? t.taskId.startedAt;
    const limit = request.taskExecutionTimeLimitMillis;
    if (rec.state === 'DELETING') {
      const marked = markCleanup(t, 'REQUEST_DELETING', now);
      if (marked) change(marked);
      continue;
    }
    if (limit !== undefined && t.runningAt !== undefined) {
      if (now - started >= limit) {
        const marked = markCleanup(
          t,
          'TASK_EXCEEDED_TIME_LIMIT',
          now,
          `Task has run for ${seconds(now - started)}, which exceeds the maximum execution time of ${seconds(limit)}`,
        );
        if (marked) change(marked);
        continue;
      }
      wake(started + limit);
    }
    const unwanted: CleanupReason | undefined =
      rec.state === 'PAUSED' ? 'PAUSING' : t.taskId.deployId !== rec.activeDeployId ? 'DEPLOY_REPLACED' : undefined;
    let run = t.run;
    if (unwanted) {
      const killAfter = run.killAfter ?? { at: now + killOld, reason: unwanted };
      if (now >= killAfter.at) {
        const marked = markCleanup(
          t,
          killAfter.reason,
          now,
          `A ${request.requestType} run may finish within ${seconds(killOld)} of becoming unwanted (${killAfter.reason})`,
        );
        if (marked) change(marked);
        continue;
      }
      if (!run.killAfter) run = { ...run, killAfter };
      wake(killAfter.at);
    } else if (run.killAfter) {
      const { killAfter: _gone, ...rest } = run;
      run = rest;
    }
    if (schedule && !run.overdue && t.runningAt !== undefined) {
      const expected = request.scheduledExpectedRuntimeMillis ?? untilNextDue(schedule, started, zone);
      if (expected !== undefined) {
        if (now - started > expected) {
          run = { ...run, overdue: { at: now, expectedMillis: expected } };
          notes.push({
            level: 'warn',
            msg: `run is overdue: running for ${seconds(now - started)}, expected ${seconds(expected)}`,
            taskId: t.taskId.id,
            ...runIdOf(run),
          });
        } else {
          wake(started + expected + 1);
        }
      }
    }
    if (run !== t.run) change({ ...t, run });
  }

  // 3. new runs
  const live = () => tasks.all().filter((t) => isLive(t.state));
  if (rec.state === 'DELETING' && jobs.queue?.length) delete jobs.queue;
  if (schedule) {
    const key = `${schedule.form}:${schedule.source}@${zone}`;
    if (jobs.scheduleKey !== key) {
      jobs.scheduleKey = key;
      setNext(jobs, nextRunAfter(schedule, now, zone));
    } else if (jobs.nextRunAt !== undefined && now >= jobs.nextRunAt) {
      const dueAt = jobs.nextRunAt;
      const running = live()[0];
      const lastDone = Math.max(0, ...tasks.all().map((t) => (isLive(t.state) ? 0 : (t.doneAt ?? 0))));
      const notBefore = lastDone + (request.waitAtLeastMillisAfterTaskFinishesForReschedule ?? 0);
      if (!wanted) {
        setNext(jobs, nextRunAfter(schedule, now, zone));
      } else if (running) {
        jobs.skipped = { count: (jobs.skipped?.count ?? 0) + 1, lastDueAt: dueAt, runningTaskId: running.taskId.id };
        notes.push({ level: 'warn', msg: 'scheduled run skipped: the previous run is still going', taskId: running.taskId.id, dueAt });
        setNext(jobs, nextRunAfter(schedule, now, zone));
      } else if (lastDone > 0 && notBefore > now) {
        wake(notBefore);
      } else {
        start(active, 1, { trigger: 'SCHEDULED', dueAt });
        setNext(jobs, nextRunAfter(schedule, now, zone));
      }
    }
    // A due time held back by waitAtLeastMillis… is woken for at notBefore, not at once again.
    if (jobs.nextRunAt !== undefined && jobs.nextRunAt > now) wake(jobs.nextRunAt);
    else if (rec.state === 'ACTIVE' && live().length === 0 && !jobs.queue?.length) rec = { ...rec, state: 'FINISHED' };
  }
  if (wanted && jobs.queue?.length) {
    const limit = request.requestType === 'SCHEDULED' ? 1 : request.instances;
    const queue: QueuedRun[] = [];
    for (const q of jobs.queue) {
      const running = live();
      if (q.runAt !== undefined && q.runAt > now) {
        wake(q.runAt);
        queue.push(q);
      } else if (running.length < limit) {
        const used = new Set(running.map((t) => t.taskId.instanceNo));
        let n = 1;
        while (used.has(n)) n++;
        const { queuedAt: _q, runAt: _r, user: _u, ...params } = q;
        start(active, n, params);
      } else {
        queue.push(q);
      }
    }
    if (queue.length > 0) jobs.queue = queue;
    else delete jobs.queue;
  }
  if (request.requestType === 'RUN_ONCE' && wanted && jobs.ranDeployId !== active.id) {
    jobs.ranDeployId = active.id;
    start(active, 1, { trigger: 'NEW_DEPLOY' });
  }
  if (JSON.stringify(jobs) !== JSON.stringify(rec.jobs ?? {})) rec = { ...rec, jobs };

  // 4. cleanup
  const ctx = requestContext(obs, { ...rec, request: { ...request, loadBalanced: false } }, now, undefined, undefined);
  const starting = new Set(actions.flatMap((a) => (a.kind === 'startTask' ? [a.taskId] : [])));
  const cleaned = cleanUp(ctx, tasks, starting);
  for (const t of cleaned.tasks ?? []) change(t);
  actions.push(...(cleaned.actions ?? []));
  if (cleaned.wakeAt !== undefined) wake(cleaned.wakeAt);

  if (rec.state === 'DELETING' && !obs.pending && !tasks.all().some((t) => isLive(t.state))) rec = { ...rec, state: 'DELETED' };
  return {
    now,
    ...(rec !== record ? { request: { ...rec, timestamp: now } } : {}),
    tasks: collapseChanges(changes).filter((t) => !deleted.includes(t.taskId.id)),
    deletedTasks: deleted,
    pending,
    actions,
    ...(wakeAt !== undefined ? { wakeAt } : {}),
    decisions,
    notes,
  };
}

/** Deploys of run-to-completion requests have no phases: SUCCEEDED at once, unless cancelled first. */
function endDeployAtOnce(obs: RequestObservation, now: number): PendingOutcome {
  const p = obs.pending;
  if (!p) return { kind: 'UNCHANGED' };
  const stop = p.intents.find((i) => i.kind === 'cancel' || i.kind === 'reject');
  const state = stop ? 'CANCELED' : 'SUCCEEDED';
  const type = (p.updatedRequest ?? obs.request).requestType;
  const message = stop
    ? `Deploy ${p.deployId} canceled before it became active`
    : `Deploy ${p.deployId} of a ${type} request succeeded at once; the next run uses it`;
  const result: DeployResult = { deployState: state, message, deployFailures: [], timestamp: now };
  const counts = { wanted: 0, accepted: 0, newHealthy: 0, newInLb: 0, oldHealthy: 0, oldInLb: 0 };
  const decision: Decision = {
    at: now,
    phase: 'END',
    step: p.progress.step,
    observed: `a ${type} request: its tasks run to completion`,
    action: stop ? 'canceled the deploy' : 'made the deploy active',
    reason: stop ? `a ${stop.kind} was requested` : 'run-to-completion deploys have no canary steps',
    kind: 'ENDED',
    from: p.progress.phase,
    state,
    counts,
    ...(stop ? { intent: stop.kind as 'cancel' | 'reject' } : {}),
  };
  const progress = { ...p.progress, timestamp: now, decisionLog: [...p.progress.decisionLog, decision] };
  return { kind: 'ENDED', deployId: p.deployId, result, progress };
}

function readSchedule(request: RequestRecord['request'], notes: JobNote[]): Schedule | undefined {
  try {
    return scheduleOf(request);
  } catch (err) {
    // The API refuses such schedules; one stored before a change of rules is reported, not run.
    notes.push({ level: 'warn', msg: `schedule cannot be read: ${(err as Error).message}` });
    return undefined;
  }
}

function untilNextDue(s: Schedule, started: number, zone: string): number | undefined {
  const next = nextRunAfter(s, started, zone);
  return next === undefined ? undefined : next - started;
}

function setNext(jobs: JobState, next: number | undefined): void {
  if (next === undefined) delete jobs.nextRunAt;
  else jobs.nextRunAt = next;
}

function runIdOf(run: TaskRun): { runId?: string } {
  return run.runId !== undefined ? { runId: run.runId } : {};
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(1)}s`;
}
