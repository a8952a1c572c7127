// Runs the engine's actions against the runtime, balancer and checks, and turns what they
// report (exits, health results, LB states) back into persisted task state. Every action is
// idempotent and deduplicated while in flight.
//
// Nothing here is fire-and-forget: every piece of background work (an exit to record, a health
// result to write, an action) is tracked, so idle() and close() wait for it, and its errors are
// handled where they happen. While the store is unavailable (busy, restarting) a task update is
// retried with back-off until it lands — an exit seen during an outage is applied afterwards —
// and a failed action asks for its request to be looked at again later. Health results are
// coalesced: at most one write per task in flight, later results folded into the next one, so a
// slow store never piles up work and the probes never wait for it.
import type { Balancer, LbOperationStatus, LbRouting, Upstream } from '../balancers/types.ts';
import type { Clock } from '../core/clock.ts';
import type { Action, CheckResult, EngineSettings, ObservedTraffic } from '../core/deploy/types.ts';
import { upstreamWeightFor } from '../core/deploy/traffic.ts';
import { MAX_WINDOW_MS } from '../balancers/traffic.ts';
import { assertNever, errorMessage } from '../core/errors.ts';
import type { EventBus } from '../core/events.ts';
import { checksWhileRunning, engineSeesHealthChange, probePassed, recordHealthResults, type HealthAssessment } from '../core/health.ts';
import { isLive, type Deploy, type HealthResult, type TaskRecord, type TaskState } from '../core/model.ts';
import { demandOf, hostOf, isUnplaced, type HostSnapshot, type TaskDemand } from '../core/placement.ts';
import type { HealthWatcher } from '../health/types.ts';
import type { Logger } from '../logger.ts';
import { ForeignTaskError, taskAddress, type Runtime, type TaskHandle, type TaskSpec, type TaskStatus } from '../runtimes/types.ts';
import { StoreUnavailableError, type Store } from '../store/types.ts';
import { killGraceMillis, launchArtifacts, launchCommand, successfulExitCodes } from '../core/launch.ts';
import { runDeploy } from '../core/tasks.ts';
import { taskEvents } from '../core/webhooks.ts';
import { withRun } from './run-spec.ts';
import type { CheckRunner } from './checks.ts';
import type { RequestLocks } from './locks.ts';

export type { HealthWatcher } from '../health/types.ts';

/** What the loop needs of the hosts: snapshots to place from, and what placed tasks will hold. */
export interface EngineHosts {
  snapshots(): readonly HostSnapshot[];
  /** a task was placed on `host` (and persisted) and has not started: count it there */
  hold(taskId: string, host: string, demand: TaskDemand): void;
  drop(taskId: string): void;
  /** forget every hold (recovery rebuilds them from the store) */
  resetHolds(): void;
  /** ids of the tasks a host's runtime holds or lists for this installation */
  tasksOn(hostId: string): Promise<string[]>;
  /** whether a host answers now (waited out until it does or is UNREACHABLE) */
  answers(hostId: string): Promise<boolean>;
  /** returns how to stop listening */
  onChange(listener: (hostId: string, change: 'silent' | 'answers' | 'state') => void): () => void;
}

/** The backends and settings the loop is built from (and hands on to its executor). */
export interface EngineDeps {
  store: Store;
  runtime: Runtime;
  hosts: EngineHosts;
  balancer?: Balancer;
  health: HealthWatcher;
  checks: CheckRunner;
  clock: Clock;
  logger: Logger;
  settings: EngineSettings;
}

export interface ExecutorDeps extends EngineDeps {
  locks: RequestLocks;
  events: EventBus;
  wake: (requestId: string) => void;
  /** look at the request again at `at` (by the engine's clock) */
  wakeAt: (requestId: string, at: number) => void;
}

/** The latest results kept on a task (its counters cover the rest). */
export const MAX_HEALTH_RESULTS = 20;
/** How much earlier than our decision to stop it an exit must be stamped to count as the task's own death. */
const EXIT_CLOCK_MARGIN_MS = 2_000;
/** a write the store could not take is tried again, backing off from 50 ms to this */
const STORE_RETRY_MAX_MS = 2_000;
/** a failed action's request is looked at again after this */
const ACTION_RETRY_MS = 1_000;
const PORT_IN_USE_NOTE = ': one of its ports was taken by another process (EADDRINUSE); it is started again on other ports';

interface PendingHealth {
  /** the latest results (MAX_HEALTH_RESULTS at most) */
  results: HealthResult[];
  /** every probe since the last write, and the failed ones, also those no longer in `results` */
  counted: { checks: number; failed: number };
  assessment: Pick<HealthAssessment, 'state' | 'message' | 'consecutiveFailures' | 'healthyAt'>;
}

export class Executor {
  readonly #d: ExecutorDeps;
  readonly #inflight = new Map<string, Promise<void>>();
  readonly #lbStates = new Map<string, LbOperationStatus>();
  /** request id of each LB operation we issued, to wake the right request */
  readonly #lbRequest = new Map<string, string>();
  /** background work not tied to an action (exits, health writes): idle() waits for it */
  readonly #background = new Set<Promise<unknown>>();
  /** health results not written yet, per task */
  readonly #pendingHealth = new Map<string, PendingHealth>();
  /** the write in flight per task */
  readonly #healthWriters = new Map<string, Promise<void>>();
  #closed = false;

  constructor(deps: ExecutorDeps) {
    this.#d = deps;
    deps.runtime.onExit((taskId, status) => this.#track(this.#recordExit(taskId, status), { taskId }, 'could not record a task exit'));
    deps.balancer?.onChange((status) => {
      this.#lbStates.set(status.operationId, status);
      const requestId = this.#lbRequest.get(status.operationId);
      if (requestId) deps.wake(requestId);
    });
    deps.balancer?.onUpstreamEvent?.((event) => {
      if (event.kind !== 'EJECTED') return;
      // The balancer stopped routing to it after failures in a row: find out now whether it is broken.
      deps.logger.warn({ ...event }, 'load balancer took a failing upstream out of rotation; probing its task now');
      deps.health.probeNow(event.taskId);
    });
  }

  run(requestId: string, action: Action): void {
    const key =
      action.kind === 'startTask' || action.kind === 'stopTask'
        ? `${action.kind}:${action.taskId}`
        : action.kind === 'runChecks'
          ? `checks:${requestId}:${action.deployId}:${action.step}`
          : `${action.kind}:${action.operationId}`;
    if (this.#inflight.has(key)) return;
    const work = this.#execute(requestId, action)
      .catch((err: unknown) => {
        if (err instanceof StoreUnavailableError)
          this.#d.logger.warn({ err: err.message, requestId, action }, `action ${action.kind} waits for the store`);
        else this.#d.logger.error({ err, requestId, action }, `action ${action.kind} failed`);
        // Actions are derived from stored state on every pass: looking again is the retry.
        if (!this.#closed) this.#d.wakeAt(requestId, this.#d.clock.now() + ACTION_RETRY_MS);
      })
      .finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, work);
  }

  /** Background work whose failure is logged where it happens; idle() and close() wait for it. */
  #track(work: Promise<unknown>, context: Record<string, unknown>, what: string): void {
    const p = work
      .catch((err: unknown) => {
        if (!this.#closed) this.#d.logger.error({ err, ...context }, what);
      })
      .finally(() => this.#background.delete(p));
    this.#background.add(p);
  }

  async #execute(requestId: string, action: Action): Promise<void> {
    switch (action.kind) {
      case 'startTask':
        return this.#startTask(action.taskId);
      case 'stopTask':
        return this.#stopTask(action.taskId);
      case 'lbApply':
        return this.#lbApply(requestId, action.operationId, action.add, action.remove, action.reweigh ?? []);
      case 'lbCancel': {
        const status = await this.#d.balancer?.cancel(action.operationId);
        if (status) this.#lbStates.set(status.operationId, status);
        return;
      }
      case 'runChecks':
        return this.#d.checks.run(requestId, action.deployId, action.step, action.names, () => this.#d.wake(requestId));
      default:
        return assertNever(action);
    }
  }

  // ---- tasks ---------------------------------------------------------------------------

  async #startTask(taskId: string): Promise<void> {
    const { store, runtime } = this.#d;
    const task = await store.getTask(taskId);
    if (!task || !isLive(task.state) || task.handle) return;
    const deploy = await store.getDeploy(task.taskId.requestId, task.taskId.deployId);
    if (!deploy) return;
    if (task.cleanup) {
      // Already unwanted: stopped if an earlier attempt (before a crash) did start it, else done.
      await this.#stopUnstarted(task);
      return;
    }
    const host = hostOf(task);
    // Not placed (it waits for a host): the engine places it first.
    if (host === undefined) return;
    const found = await runtime.find(taskId, host);
    if (found) {
      const status = await runtime.recover(found);
      await this.#adopt(taskId, found, status);
      return;
    }
    const env = { ...deploy.env, ...(deploy.taskEnv[String(task.taskId.instanceNo)] ?? {}) };
    const request = (await store.getRequest(task.taskId.requestId))?.request;
    const artifacts = launchArtifacts(deploy);
    // The task runs from some time after this; a fast exit reported before start() returns needs it.
    const askedAt = this.#d.clock.now();
    const spec: TaskSpec = {
      taskId,
      requestId: task.taskId.requestId,
      deployId: task.taskId.deployId,
      instanceNo: task.taskId.instanceNo,
      host,
      startedAt: task.taskId.startedAt,
      rackId: task.taskId.rackId,
      estimatedInstanceCount: request?.instances ?? 1,
      ...launchCommand(deploy),
      ...(artifacts.length > 0 ? { artifacts } : {}),
      ...(deploy.shell !== undefined ? { shell: deploy.shell } : {}),
      ...(deploy.containerInfo?.docker
        ? { container: { docker: deploy.containerInfo.docker, volumes: deploy.containerInfo.volumes ?? [] } }
        : {}),
      env,
      numPorts: deploy.resources.numPorts,
      cpus: deploy.resources.cpus,
      memoryMb: deploy.resources.memoryMb,
    };
    const result = await runtime.start(withRun(spec, task, deploy));
    const now = this.#d.clock.now();
    // Started: its host's runtime holds it now. Waiting: it keeps its place on the host.
    if (result.kind !== 'waiting') this.#d.hosts.drop(taskId);
    if (result.kind === 'waiting') {
      await this.#updateTask(taskId, (t) => (t.waitingReason === result.reason ? undefined : { ...t, waitingReason: result.reason }));
      return;
    }
    if (result.kind === 'error') {
      await this.#updateTask(taskId, (t) => finish(t, 'TASK_ERROR', now, result.message));
      return;
    }
    let endedMeanwhile = false;
    const started = await this.#updateTask(taskId, (t) => {
      if (!isLive(t.state)) {
        // It ended while the runtime was still starting it: a fast exit reported before start()
        // returned, or a stop. The record keeps the handle all the same, so its logs stay readable.
        endedMeanwhile = true;
        if (t.handle) return undefined;
        // It did run (its exit says so): from when it was asked to start, so the run has a duration.
        const ran = t.exitCode !== undefined && t.runningAt === undefined ? { runningAt: Math.min(askedAt, t.doneAt ?? askedAt) } : {};
        return { ...t, handle: result.handle, ports: result.ports, ...ran };
      }
      const next: TaskRecord = { ...t, handle: result.handle, ports: result.ports, state: 'TASK_RUNNING', runningAt: now };
      delete next.waitingReason;
      next.updates = [...t.updates, { state: 'TASK_STARTING', timestamp: now }, { state: 'TASK_RUNNING', timestamp: now }];
      return next;
    });
    if (started && !endedMeanwhile) this.#watchHealth(started, deploy);
    else if (endedMeanwhile) {
      // Stopped (recorded as killed) meanwhile, it must not keep running; exited, stop is a no-op.
      // Either way its exit was recorded without a handle, so nothing released what it held.
      await runtime.stop(result.handle, this.#d.settings.killGraceMillis);
      await runtime.release(result.handle);
    }
  }

  /** Attach a runtime handle found after a crash (or at recovery) to its task record. */
  async #adopt(taskId: string, handle: TaskHandle, status: TaskStatus): Promise<void> {
    // Found on its host: the host's runtime holds it now.
    this.#d.hosts.drop(taskId);
    const now = this.#d.clock.now();
    const adopted = await this.#updateTask(taskId, (t) => {
      if (!isLive(t.state)) return undefined;
      const ports = Array.isArray(handle.ports) ? (handle.ports as number[]) : t.ports;
      if (status.state === 'running') {
        if (t.handle && t.state !== 'TASK_LAUNCHED') return undefined;
        return {
          ...t,
          handle,
          ports,
          state: t.state === 'TASK_LAUNCHED' ? 'TASK_RUNNING' : t.state,
          runningAt: t.runningAt ?? status.startedAt,
          updates: t.state === 'TASK_LAUNCHED' ? [...t.updates, { state: 'TASK_RUNNING', timestamp: now }] : t.updates,
        };
      }
      return { ...t, handle, ports };
    });
    if (status.state === 'exited') await this.#recordExit(taskId, status);
    if (status.state === 'lost') await this.#updateTask(taskId, (t) => finish(t, 'TASK_LOST', now, status.message));
    if (adopted && status.state === 'running') {
      const deploy = await this.#d.store.getDeploy(adopted.taskId.requestId, adopted.taskId.deployId);
      if (deploy) this.#watchHealth(adopted, deploy);
    }
  }

  /**
   * Health checks for a task that runs: until its first verdict, and — once HEALTHY, with
   * checkWhileRunning — for as long as it runs (also after a restart, from its stored counters).
   * Tasks whose checks are skipped (request skipHealthchecks, deploy skipHealthchecksOnDeploy)
   * are healthy at once and not checked while running either.
   */
  #watchHealth(task: TaskRecord, deploy: Deploy): void {
    // Runs of run-to-completion requests are not health-checked: they are judged by their exit.
    if (task.cleanup || task.run || task.health.state === 'UNHEALTHY') return;
    if (task.health.state === 'HEALTHY' && !checksWhileRunning(deploy.healthcheck)) return;
    const taskId = task.taskId.id;
    const work = this.#retrying(`start health checks of ${taskId}`, () => this.#d.store.getRequest(task.taskId.requestId)).then(
      async (record) => {
        if (this.#closed) return;
        if (record?.request.skipHealthchecks || deploy.skipHealthchecksOnDeploy) {
          if (task.health.state !== 'HEALTHY')
            await this.onHealthResult(taskId, undefined, { state: 'HEALTHY', message: 'Health checks skipped' });
          return;
        }
        const verdict = this.#d.health.watch(
          { taskId, host: taskAddress(task.handle), ports: task.ports, runningAt: task.runningAt ?? this.#d.clock.now() },
          deploy.healthcheck,
          deploy.considerHealthyAfterRunningForSeconds,
          {
            results: task.health.results,
            state: task.health.state,
            ...(task.health.consecutiveFailures !== undefined ? { consecutiveFailures: task.health.consecutiveFailures } : {}),
            ...(task.health.lastCheckAt !== undefined ? { lastCheckAt: task.health.lastCheckAt } : {}),
          },
        );
        // A verdict that is already final (e.g. considerHealthyAfterRunningForSeconds: 0) schedules no probe.
        if (verdict && verdict.state !== 'UNKNOWN' && verdict.state !== task.health.state) {
          await this.onHealthResult(taskId, undefined, verdict);
        }
      },
    );
    this.#track(work, { taskId }, 'could not start health checks');
  }

  /**
   * A health probe answered (or the no-healthcheck timer passed). Queued and written in the
   * background: one write per task at a time, results arriving meanwhile go into the next one.
   * Resolves once this result is written (or the task is gone).
   */
  onHealthResult(taskId: string, result: HealthResult | undefined, assessment: HealthAssessment): Promise<void> {
    const queued = this.#pendingHealth.get(taskId);
    const verdict = {
      state: assessment.state,
      ...(assessment.message !== undefined ? { message: assessment.message } : {}),
      ...(assessment.consecutiveFailures !== undefined ? { consecutiveFailures: assessment.consecutiveFailures } : {}),
      ...(assessment.healthyAt !== undefined ? { healthyAt: assessment.healthyAt } : {}),
    };
    const results = [...(queued?.results ?? []), ...(result ? [result] : [])].slice(-MAX_HEALTH_RESULTS);
    const counted = {
      checks: (queued?.counted.checks ?? 0) + (result ? 1 : 0),
      failed: (queued?.counted.failed ?? 0) + (result && !probePassed(result) ? 1 : 0),
    };
    // A message or a healthy time said earlier in the batch is not lost to a later result that says none.
    this.#pendingHealth.set(taskId, {
      results,
      counted,
      assessment: {
        ...(queued?.assessment.state === verdict.state ? queued.assessment : {}),
        ...verdict,
        ...(verdict.healthyAt === undefined && queued?.assessment.healthyAt !== undefined
          ? { healthyAt: queued.assessment.healthyAt }
          : {}),
      },
    });
    let writer = this.#healthWriters.get(taskId);
    if (!writer) {
      writer = this.#writeHealth(taskId).finally(() => this.#healthWriters.delete(taskId));
      this.#healthWriters.set(taskId, writer);
      this.#track(writer, { taskId }, 'could not write a health result');
    }
    return writer.catch(() => undefined);
  }

  async #writeHealth(taskId: string): Promise<void> {
    for (let batch = this.#pendingHealth.get(taskId); batch; batch = this.#pendingHealth.get(taskId)) {
      this.#pendingHealth.delete(taskId);
      const { results, counted, assessment } = batch;
      if (assessment.state === 'UNHEALTHY' && !(await this.#hostAnswers(taskId))) {
        // Its host went silent: the task is lost with it (host loss replaces it, uncounted), not unhealthy.
        this.#d.logger.info({ taskId }, 'a failed health check on a host that does not answer: left to host loss');
        continue;
      }
      await this.#updateTask(
        taskId,
        (t) => {
          if (!isLive(t.state)) return undefined;
          if (results.length === 0 && t.health.state === assessment.state) return undefined;
          return { ...t, health: recordHealthResults(t.health, results, assessment, this.#d.clock.now(), MAX_HEALTH_RESULTS, counted) };
        },
        // A probe that changes nothing the engine decides on costs one task write, not a pass over its request.
        (before, after) => engineSeesHealthChange(before.health, after.health),
      );
    }
  }

  async #hostAnswers(taskId: string): Promise<boolean> {
    const task = await this.#d.store.getTask(taskId);
    const host = task && hostOf(task);
    return host === undefined ? true : this.#d.hosts.answers(host);
  }

  async #stopTask(taskId: string): Promise<void> {
    const { store } = this.#d;
    // A start still in flight would leave a process nobody knows about: let it land first.
    await this.#inflight.get(`startTask:${taskId}`);
    const task = await store.getTask(taskId);
    if (!task || !isLive(task.state)) return;
    this.#d.health.unwatch(taskId);
    if (!task.handle) {
      await this.#stopUnstarted(task);
      return;
    }
    await this.#stopHandle(taskId, task.handle as TaskHandle);
  }

  /**
   * A task whose handle was never recorded: an attempt may still have started it (the
   * scheduler died between the start and the write), so the runtime is asked; what it finds is
   * stopped like any task, else the task is done without ever running.
   */
  async #stopUnstarted(task: TaskRecord): Promise<void> {
    const taskId = task.taskId.id;
    const host = hostOf(task);
    // Never placed: never started anywhere.
    const found = host === undefined ? undefined : await this.#d.runtime.find(taskId, host);
    if (found) {
      await this.#updateTask(taskId, (t) => (isLive(t.state) && !t.handle ? { ...t, handle: found } : undefined));
      await this.#stopHandle(taskId, found);
      return;
    }
    this.#d.hosts.drop(taskId);
    await this.#updateTask(taskId, (t) => finish(t, 'TASK_KILLED', this.#d.clock.now(), 'Killed before it started'));
  }

  async #stopHandle(taskId: string, handle: TaskHandle): Promise<void> {
    const { runtime, settings, store } = this.#d;
    // The deploy's own grace (executorData.sigKillProcessesAfterMillis), else the server's.
    const task = await store.getTask(taskId);
    const deploy = task ? await store.getDeploy(task.taskId.requestId, task.taskId.deployId) : undefined;
    await runtime.stop(handle, killGraceMillis(deploy, settings.killGraceMillis));
    // The exit normally arrives through onExit; make sure it is recorded even if it raced.
    const status = await runtime.inspect(handle);
    if (status.state === 'exited') await this.#recordExit(taskId, status);
    if (status.state === 'lost') await this.#updateTask(taskId, (t) => finish(t, 'TASK_LOST', this.#d.clock.now(), status.message));
  }

  async #recordExit(taskId: string, status: Extract<TaskStatus, { state: 'exited' }>): Promise<void> {
    this.#d.health.unwatch(taskId);
    this.#d.hosts.drop(taskId);
    const known = await this.#d.store.getTask(taskId);
    // SingularityExecutor's successfulExitCodes: an exit with one of them is TASK_FINISHED.
    const success = successfulExitCodes(known ? await this.#d.store.getDeploy(known.taskId.requestId, known.taskId.deployId) : undefined);
    const ended = await this.#updateTask(taskId, (t) => {
      if (!isLive(t.state)) return undefined;
      // Killed by us once we asked it to stop; a task found unhealthy that died before we did,
      // or one that died clearly before we chose to stop it (its exit's write waited out a busy
      // store), died on its own. "Clearly": a Docker host stamps the exit by its own clock.
      const stopChosenAt = Math.max(
        t.cleanup?.timestamp ?? 0,
        [...t.updates].reverse().find((u) => u.state === 'TASK_KILLING')?.timestamp ?? 0,
      );
      const diedFirst = t.cleanup !== undefined && status.finishedAt > 0 && status.finishedAt < stopChosenAt - EXIT_CLOCK_MARGIN_MS;
      const ownDeath = !t.cleanup || diedFirst || (t.cleanup.reason === 'UNHEALTHY' && t.state !== 'TASK_KILLING');
      // SingularityExecutor's successfulExitCodes: an exit with one of them is TASK_FINISHED.
      const finished = status.exitCode !== null && success.includes(status.exitCode);
      const state: TaskState = !ownDeath ? 'TASK_KILLED' : finished ? 'TASK_FINISHED' : 'TASK_FAILED';
      const portInUse = status.portInUse === true && !t.cleanup;
      const code = status.signal ? `signal ${status.signal}` : `exit code ${status.exitCode}`;
      // The runtime's reason (e.g. an OOM kill) says more than the code alone.
      const how = `${status.message ? `${status.message} (${code})` : code}${portInUse ? PORT_IN_USE_NOTE : ''}`;
      const done = finish(t, state, status.finishedAt || this.#d.clock.now(), how);
      return done && { ...done, exitCode: status.exitCode, signal: status.signal, ...(portInUse ? { portInUse: true } : {}) };
    });
    if (ended?.handle) await this.#d.runtime.release(ended.handle as TaskHandle);
  }

  /**
   * Read-modify-write one task under its request's lock; publishes and wakes on change. While
   * the store is unavailable it is tried again (an exit or a verdict must not be lost to a busy
   * or restarting store), until the executor closes. `wakes` says whether the change is one
   * the engine must reconcile (default: every change).
   */
  #updateTask(
    taskId: string,
    change: (t: TaskRecord) => TaskRecord | undefined,
    wakes?: (before: TaskRecord, after: TaskRecord) => boolean,
  ): Promise<TaskRecord | undefined> {
    return this.#retrying(`update task ${taskId}`, () => this.#updateTaskOnce(taskId, change, wakes));
  }

  async #updateTaskOnce(
    taskId: string,
    change: (t: TaskRecord) => TaskRecord | undefined,
    wakes: (before: TaskRecord, after: TaskRecord) => boolean = () => true,
  ): Promise<TaskRecord | undefined> {
    const requestId = (await this.#d.store.getTask(taskId))?.taskId.requestId;
    if (!requestId) return undefined;
    const written = await this.#d.locks.run(requestId, async () => {
      const current = await this.#d.store.getTask(taskId);
      if (!current) return undefined;
      const next = change(current);
      if (!next) return undefined;
      await this.#d.store.apply({ tasks: [next], webhookEvents: taskEvents(current, next) });
      return { next, wake: wakes(current, next) };
    });
    if (!written) return undefined;
    this.#d.events.publish({ type: 'TASK', at: this.#d.clock.now(), task: written.next });
    if (written.wake) this.#d.wake(requestId);
    return written.next;
  }

  /** `fn`, tried again with back-off while the store is unavailable, until the executor closes. */
  async #retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let delay = 50, attempt = 1; ; delay = Math.min(STORE_RETRY_MAX_MS, delay * 2), attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof StoreUnavailableError) || this.#closed) throw err;
        if (attempt === 1 || attempt % 10 === 0)
          this.#d.logger.warn({ err: err.message, attempt }, `${what}: the store is unavailable; retrying`);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  // ---- load balancer -------------------------------------------------------------------

  async #lbApply(requestId: string, operationId: string, add: string[], remove: string[], reweigh: string[] = []): Promise<void> {
    const balancer = this.#d.balancer;
    this.#lbRequest.set(operationId, requestId);
    if (!balancer) {
      this.#lbStates.set(operationId, { operationId, state: 'FAILED', message: 'No load balancer is configured' });
      this.#d.wake(requestId);
      return;
    }
    const { service, upstreams } = await this.#resolveUpstreams(requestId, [...add, ...remove, ...reweigh]);
    if (!service) {
      this.#lbStates.set(operationId, { operationId, state: 'FAILED', message: 'The deploy has no serviceBasePath' });
      this.#d.wake(requestId);
      return;
    }
    // Read with the upstreams, outside the try: a store that cannot answer fails the action (retried), not the operation.
    const routing = await this.#routingOf(requestId);
    const pick = (ids: string[]) => ids.map((id) => upstreams.get(id)).filter((u): u is Upstream => u !== undefined);
    try {
      // Members added again take the weight they are given: one operation re-weighs them.
      const status = await balancer.apply(
        operationId,
        routing ? { ...service, routing } : service,
        pick([...add, ...reweigh]),
        pick(remove),
      );
      this.#lbStates.set(operationId, status);
      if (status.state !== 'FAILED') await this.#afterTrafficAbort(requestId, service.serviceId, pick(remove));
    } catch (err) {
      this.#lbStates.set(operationId, { operationId, state: 'FAILED', message: errorMessage(err) });
    }
    this.#d.wake(requestId);
  }

  /**
   * The routing every LB operation of the request carries: the pending deploy's, while there is
   * one with routing — read when the operation is applied (or applied again after a restart),
   * so an operation applied after the deploy ended clears it (core/request/lb-membership.ts).
   */
  async #routingOf(requestId: string): Promise<LbRouting | undefined> {
    const pending = await this.#d.store.getPending(requestId);
    if (!pending) return undefined;
    const rules = (await this.#d.store.getDeploy(requestId, pending.deployId))?.canaryDeploySettings.routing;
    return rules ? { deployId: pending.deployId, ...rules } : undefined;
  }

  /**
   * A traffic-step deploy that ended without succeeding has just been taken out of the LB:
   * check, on the balancer's own counters, that its share really went to 0, and log it (the
   * first whole second without a request to it), bounded to 10 s.
   */
  async #afterTrafficAbort(requestId: string, serviceId: string, removed: Upstream[]): Promise<void> {
    const balancer = this.#d.balancer;
    const deployIds = new Set(removed.map((u) => u.deployId).filter((d): d is string => d !== undefined));
    if (!balancer || deployIds.size === 0) return;
    const pending = await this.#d.store.getPending(requestId);
    for (const deployId of deployIds) {
      if (pending?.deployId === deployId) continue;
      const deploy = await this.#d.store.getDeploy(requestId, deployId);
      if (!deploy?.canaryDeploySettings.trafficSteps?.length) continue;
      const state = (await this.#d.store.getDeployHistory(requestId, deployId))?.result?.deployState;
      if (state === undefined || state === 'SUCCEEDED') continue;
      const t0 = this.#d.clock.now();
      this.#track(
        (async () => {
          while (!this.#closed && this.#d.clock.now() - t0 < 10_000) {
            const t = await balancer.traffic(serviceId, { windowMs: 2_000, stepMs: 1_000 });
            const done = t.series?.points[0];
            if (done && done.at >= t0 && !done.deploys.some((d) => d.deployId === deployId && d.requests > 0)) {
              this.#d.logger.info(
                { requestId, deployId, serviceId, ms: done.at - t0 },
                `deploy ${deployId} (${state}) is out of the load balancer: its share of the requests is 0 % from ${done.at - t0} ms after its removal (the balancer's counters, by whole seconds)`,
              );
              return;
            }
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
          if (!this.#closed)
            this.#d.logger.warn({ requestId, deployId, serviceId }, `deploy ${deployId} still got requests 10 s after its removal`);
        })(),
        { requestId, deployId },
        'could not read the traffic counters after a traffic deploy ended',
      );
    }
  }

  /**
   * The upstreams of these tasks, each with the weight the persisted pending deploy gives it
   * (core/deploy/traffic.ts): every operation — a deploy's, the steady state's, a restore
   * after a restart — puts the intended weights in the balancer.
   */
  async #resolveUpstreams(requestId: string, taskIds: string[]) {
    const { store } = this.#d;
    const upstreams = new Map<string, Upstream>();
    const pending = await store.getPending(requestId);
    let service: Parameters<Balancer['apply']>[1] | undefined;
    let newest = -1;
    for (const id of taskIds) {
      const task = await store.getTask(id);
      if (!task) continue;
      const deploy = await store.getDeploy(requestId, task.taskId.deployId);
      if (!deploy) continue;
      const port = task.ports[deploy.loadBalancerPortIndex];
      if (port !== undefined) {
        // The task's host address: its Docker host's, or 127.0.0.1 for local processes.
        const weight = upstreamWeightFor(pending, task.taskId.deployId);
        upstreams.set(id, {
          taskId: id,
          host: taskAddress(task.handle),
          port,
          group: deploy.loadBalancerUpstreamGroup,
          deployId: task.taskId.deployId,
          ...(weight !== undefined ? { weight } : {}),
        });
      }
      if (deploy.serviceBasePath && deploy.timestamp > newest) {
        newest = deploy.timestamp;
        service = {
          serviceId: deploy.loadBalancerServiceIdOverride ?? requestId,
          basePath: deploy.serviceBasePath,
          groups: deploy.loadBalancerGroups ?? [],
          ...(deploy.loadBalancerOptions ? { options: deploy.loadBalancerOptions } : {}),
        };
      }
    }
    if (!service) {
      const record = await store.getRequest(requestId);
      const deploy = record?.activeDeployId ? await store.getDeploy(requestId, record.activeDeployId) : undefined;
      if (deploy?.serviceBasePath) {
        service = {
          serviceId: deploy.loadBalancerServiceIdOverride ?? requestId,
          basePath: deploy.serviceBasePath,
          groups: deploy.loadBalancerGroups ?? [],
        };
      }
    }
    return { service, upstreams };
  }

  /**
   * Latest known state of an operation. One the balancer forgot (it restarted) is applied again
   * — unless it is being cancelled: then none of it is in effect beyond what the restart
   * restored, which is what a cancel leaves, so it reads as CANCELED.
   */
  async observeLbOperation(
    requestId: string,
    op: { operationId: string; add: string[]; remove: string[]; reweigh?: string[]; canceling?: boolean },
  ): Promise<{ state: LbOperationStatus['state']; message?: string } | undefined> {
    const { operationId } = op;
    this.#lbRequest.set(operationId, requestId);
    const known = this.#lbStates.get(operationId);
    if (known) return { state: known.state, ...(known.message ? { message: known.message } : {}) };
    if (this.#inflight.has(`lbApply:${operationId}`)) return undefined;
    const status = await this.#d.balancer?.state(operationId);
    if (status) {
      this.#lbStates.set(operationId, status);
      return { state: status.state, ...(status.message ? { message: status.message } : {}) };
    }
    if (op.canceling) {
      return { state: 'CANCELED', message: 'unknown to the balancer (it restarted) while being canceled' };
    }
    this.run(requestId, { kind: 'lbApply', operationId, add: op.add, remove: op.remove, ...(op.reweigh ? { reweigh: op.reweigh } : {}) });
    return undefined;
  }

  /**
   * What the balancer counted for the service since `since` (whole seconds after it, so
   * nothing from before the weights changed): the new deploy's requests and everyone's.
   */
  async observeTraffic(serviceId: string, deployId: string, since: number): Promise<ObservedTraffic | undefined> {
    const balancer = this.#d.balancer;
    if (!balancer) return undefined;
    const now = this.#d.clock.now();
    const firstSecond = Math.floor(since / 1000) + 1;
    const seconds = Math.min(MAX_WINDOW_MS / 1000, Math.floor(now / 1000) - firstSecond + 1);
    if (seconds < 1) return { deployId, from: firstSecond * 1000, newRequests: 0, requests: 0 };
    try {
      const t = await balancer.traffic(serviceId, { windowMs: seconds * 1000 });
      const newRequests = t.deploys.find((d) => d.deployId === deployId)?.requests ?? 0;
      return { deployId, from: (Math.floor(now / 1000) - seconds + 1) * 1000, newRequests, requests: t.total.requests };
    } catch (err) {
      this.#d.logger.warn({ err, serviceId }, 'could not read the balancer traffic counters');
      return undefined;
    }
  }

  checkResults(requestId: string, deployId: string): CheckResult[] {
    return this.#d.checks.results(requestId, deployId);
  }

  // ---- recovery ------------------------------------------------------------------------

  /**
   * After a (re)start: re-adopt live tasks, learn about exits, count tasks placed but not
   * started where they were placed, restore LB membership, and rid every host that answers of
   * the tasks that ended while nobody watched.
   */
  async recover(): Promise<void> {
    const { store, runtime, logger } = this.#d;
    const tasks = await store.listTasks({ live: true });
    // Another term (or scheduler) may have started or ended tasks since these were counted.
    this.#d.hosts.resetHolds();
    for (const task of tasks) {
      const id = task.taskId.id;
      const host = hostOf(task);
      if (!task.handle && host !== undefined) {
        const deploy = await store.getDeploy(task.taskId.requestId, task.taskId.deployId);
        if (deploy) this.#d.hosts.hold(id, host, demandOf(runDeploy(deploy, task.run)));
      }
      try {
        if (task.handle) {
          const status = await runtime.recover(task.handle as TaskHandle);
          await this.#adoptExisting(task, status);
        } else if (!isUnplaced(task)) {
          const found = await runtime.find(id, host);
          if (found) await this.#adopt(id, found, await runtime.recover(found));
        }
      } catch (err) {
        if (err instanceof ForeignTaskError) await this.#noteForeign(task, err);
        else logger.error({ err, taskId: id }, 'could not re-adopt task');
      }
    }
    await this.#restoreLb(await store.listTasks({ live: true }));
    logger.info({ tasks: tasks.length }, 'recovered tasks');
    for (const h of this.#d.hosts.snapshots()) if (h.reachable) this.sweepHost(h.id);
  }

  /**
   * A host answers again (or Fledge started): stop and remove what it runs for tasks that are
   * no longer live — lost with the host and replaced elsewhere meanwhile, or ended while
   * nobody watched — and release what the runtime still held for them, so nothing runs twice.
   * The decision is the store's: only a task whose record is live is kept.
   */
  sweepHost(hostId: string): void {
    const key = `sweep:${hostId}`;
    if (this.#inflight.has(key)) return;
    const work = this.#sweep(hostId)
      .catch((err: unknown) => {
        // Silent again: its next answer sweeps it. Answering but failing: try again shortly.
        const answers = this.#d.hosts.snapshots().find((h) => h.id === hostId)?.reachable ?? false;
        this.#d.logger.warn({ err, host: hostId }, `could not sweep host ${hostId} yet${answers ? '; trying again in 5 s' : ''}`);
        if (answers && !this.#closed) setTimeout(() => this.#closed || this.sweepHost(hostId), 5_000).unref();
      })
      .finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, work);
  }

  async #sweep(hostId: string): Promise<void> {
    const { store, runtime, settings, logger } = this.#d;
    for (const id of await this.#d.hosts.tasksOn(hostId)) {
      const task = await store.getTask(id);
      if (task && isLive(task.state)) continue;
      const handle: TaskHandle = { ...(task?.handle ?? {}), taskId: id, host: hostId };
      logger.info({ taskId: id, host: hostId, state: task?.state }, 'stopping a container whose task is not live any more');
      await runtime.stop(handle, settings.killGraceMillis);
      await runtime.release(handle);
    }
  }

  /** The engine ended a task (lost with its host) or deleted it: stop watching it. */
  forget(taskId: string): void {
    this.#d.health.unwatch(taskId);
    this.#d.hosts.drop(taskId);
  }

  /** A task of another machine: left alone, and said so on the task and in the log. */
  async #noteForeign(task: TaskRecord, err: ForeignTaskError): Promise<void> {
    this.#d.logger.warn({ taskId: task.taskId.id, machine: err.machine, here: err.here }, err.message);
    await this.#updateTask(task.taskId.id, (t) => {
      if (t.updates[t.updates.length - 1]?.message === err.message) return undefined;
      return { ...t, updates: [...t.updates, { state: t.state, timestamp: this.#d.clock.now(), message: err.message }] };
    });
  }

  async #adoptExisting(task: TaskRecord, status: TaskStatus): Promise<void> {
    const id = task.taskId.id;
    const now = this.#d.clock.now();
    if (status.state === 'exited') return this.#recordExit(id, status);
    if (status.state === 'lost') {
      await this.#updateTask(id, (t) => finish(t, 'TASK_LOST', now, status.message));
      return;
    }
    if (task.cleanup) {
      this.#d.wake(task.taskId.requestId);
      return;
    }
    const deploy = await this.#d.store.getDeploy(task.taskId.requestId, task.taskId.deployId);
    if (deploy) this.#watchHealth(task, deploy);
  }

  /** The builtin balancer keeps state in memory: put back every upstream the store says is in. */
  async #restoreLb(tasks: TaskRecord[]): Promise<void> {
    const balancer = this.#d.balancer;
    if (!balancer) return;
    const byRequest = new Map<string, string[]>();
    const forgotten = new Map<string, boolean>();
    const balancerForgot = async (operationId: string) => {
      let known = forgotten.get(operationId);
      if (known === undefined) forgotten.set(operationId, (known = (await balancer.state(operationId)) === undefined));
      return known;
    };
    for (const t of tasks) {
      // Members, and members whose removal was in flight if the balancer forgot that removal:
      // it is applied again from its record, or, if it was being cancelled, reads as CANCELED —
      // which leaves them in. A removal the balancer still knows goes on; its outcome is observed.
      const removal = t.lb.remove;
      const member =
        t.lb.add?.state === 'SUCCESS' && (!removal || (removal.state === 'WAITING' && (await balancerForgot(removal.operationId))));
      if (member) {
        byRequest.set(t.taskId.requestId, [...(byRequest.get(t.taskId.requestId) ?? []), t.taskId.id]);
      }
    }
    for (const [requestId, ids] of byRequest) {
      const { service, upstreams } = await this.#resolveUpstreams(requestId, ids);
      if (!service) continue;
      // With the pending deploy's routing: a restarted builtin proxy routes testers and cohorts as before.
      const routing = await this.#routingOf(requestId);
      await balancer.apply(
        `${requestId}-restore-${this.#d.clock.now()}`,
        routing ? { ...service, routing } : service,
        [...upstreams.values()],
        [],
      );
    }
  }

  async idle(): Promise<void> {
    while (this.#inflight.size > 0 || this.#background.size > 0) {
      await Promise.allSettled([...this.#inflight.values(), ...this.#background]);
    }
  }

  async close(): Promise<void> {
    // Retries end first: a store that stays away must not hold the shutdown.
    this.#closed = true;
    await this.#d.health.close();
    await this.idle();
  }
}

function finish(t: TaskRecord, state: TaskState, at: number, message?: string): TaskRecord | undefined {
  if (!isLive(t.state)) return undefined;
  return {
    ...t,
    state,
    doneAt: at,
    updates: [...t.updates, { state, timestamp: at, ...(message ? { message } : {}) }],
  };
}
