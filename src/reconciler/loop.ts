/*
 * The reconcile loop: load → observe → step → persist → execute, one request at a time.
 *
 * It is woken by events — task exits, health results, LB operation changes, API intents —
 * and by the earliest deadline any step asked to be woken at, so a phase change follows its
 * cause within milliseconds. A slow safety tick catches anything missed. Decisions are
 * persisted before their actions run; actions are idempotent (task ids, LB operation ids),
 * so a crash between the two repeats them safely. A failure while reconciling one request is
 * logged and the loop moves on; a store that is unavailable (busy, restarting) makes the loop
 * back off (250 ms → 5 s) and try again, nothing half-applied.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { EventBus } from '../core/events.ts';
import { isLive } from '../core/model.ts';
import { demandOf, hostOf } from '../core/placement.ts';
import { stepRequest, type StepOutcome } from '../core/request/step.ts';
import { runDeploy } from '../core/tasks.ts';
import type { Deploy } from '../core/model.ts';
import { stepWebhookEvents } from '../core/webhooks.ts';
import { FencedError, StoreUnavailableError, type ChangeSet } from '../store/types.ts';
import { Executor, type EngineDeps } from './execute.ts';
import { KeyedMutex, type RequestLocks } from './locks.ts';
import { observeRequest } from './observe.ts';

export interface LoopDeps extends EngineDeps {
  events?: EventBus;
  /** per-request locks; default in-process (the store's when several schedulers share it) */
  locks?: RequestLocks;
  /** false: the caller drives tick() itself (most component tests) */
  timers?: boolean;
  safetyTickMillis?: number;
  /** told how long each pass took (metrics) */
  observePass?: (millis: number) => void;
  /** told how long each tick took: the loop's work between two turns it gave the event loop (metrics) */
  observeTick?: (millis: number) => void;
  /** how long a pass holds the event loop before giving it a turn; default TICK_MILLIS */
  tickMillis?: number;
}

/**
 * A pass gives the event loop a turn once it has held it this long. better-sqlite3 answers
 * synchronously behind already-resolved promises, so without it a pass over thousands of
 * requests would hold the API, the probes and the in-process balancer for all of it.
 */
export const TICK_MILLIS = 10;

export class ReconcileLoop {
  readonly locks: RequestLocks;
  readonly events: EventBus;
  readonly executor: Executor;
  readonly #deps: LoopDeps;
  readonly #dirty = new Set<string>();
  #all = true;
  #running: Promise<void> | undefined;
  #scheduled = false;
  #timer: NodeJS.Timeout | undefined;
  #safety: NodeJS.Timeout | undefined;
  #wakeAt = new Map<string, number>();
  readonly #unlisten: () => void;
  /** back-off per request while the store is unavailable */
  readonly #retryMs = new Map<string, number>();
  #closed = false;
  /**
   * Tasks are being re-adopted and the LB restored: no pass may run yet. A pass would act on
   * LB operations the restore is about to contradict (a removal re-applied, then undone by the
   * restore's add, reads as done while the task is back in rotation). Wakes meanwhile wait.
   */
  #recovering = false;

  constructor(deps: LoopDeps) {
    this.#deps = deps;
    this.locks = deps.locks ?? new KeyedMutex();
    this.events = deps.events ?? new EventBus();
    this.executor = new Executor({
      ...deps,
      locks: this.locks,
      events: this.events,
      wake: (id) => this.wake(id),
      wakeAt: (id, at) => this.#wakeLater(id, at),
    });
    // A host that stops answering, answers again or changes state may change every request.
    this.#unlisten = deps.hosts.onChange((hostId, change) => {
      if (this.#closed) return;
      if (change === 'answers') this.executor.sweepHost(hostId);
      this.wake();
    });
  }

  /** Re-adopt tasks and LB state after a (re)start, then reconcile everything. */
  async start(): Promise<void> {
    this.#recovering = true;
    try {
      await this.executor.recover();
    } finally {
      this.#recovering = false;
    }
    this.wake();
  }

  /** Reconcile one request (or, without an id, every request) as soon as possible. */
  wake(requestId?: string): void {
    if (this.#closed) return;
    if (requestId === undefined) this.#all = true;
    else this.#dirty.add(requestId);
    this.#schedule();
  }

  /** Run a pass soon over what is dirty; never widens it to every request. */
  #schedule(): void {
    if (this.#deps.timers === false || this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      if (!this.#closed) void this.tick().catch((err: unknown) => this.#deps.logger.error({ err }, 'reconcile pass failed'));
    });
  }

  /** One pass over the dirty requests; concurrent calls share one pass and queue one more. */
  async tick(): Promise<void> {
    if (this.#recovering) return;
    if (this.#running) {
      await this.#running;
      if (this.#dirty.size === 0 && !this.#all) return;
    }
    const t0 = performance.now();
    this.#running = this.#pass().finally(() => {
      this.#running = undefined;
      this.#deps.observePass?.(performance.now() - t0);
    });
    await this.#running;
    // Requests woken while the pass ran get a pass of their own (only they: one API call, one request).
    if (this.#dirty.size > 0 || this.#all) this.#schedule();
  }

  async #pass(): Promise<void> {
    if (this.#closed) return;
    const { store, logger, clock } = this.#deps;
    let ids: string[];
    const full = this.#all;
    if (full) {
      this.#all = false;
      this.#dirty.clear();
      try {
        ids = (await store.listRequests()).filter((r) => r.state !== 'DELETED').map((r) => r.request.id);
      } catch (err) {
        // The store is away: look at everything again shortly.
        this.#all = true;
        logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not list requests; retrying');
        setTimeout(() => this.wake(), 500).unref();
        return;
      }
    } else {
      ids = [...this.#dirty];
      this.#dirty.clear();
    }
    const tickMillis = this.#deps.tickMillis ?? TICK_MILLIS;
    let tickStart = performance.now();
    for (const id of ids) {
      if (this.#closed) break;
      if (performance.now() - tickStart >= tickMillis) {
        this.#deps.observeTick?.(performance.now() - tickStart);
        await yieldToLoop();
        tickStart = performance.now();
      }
      try {
        await this.reconcileRequest(id);
        this.#retryMs.delete(id);
      } catch (err) {
        // The store away (or the lease lost) is transient: back off, without alarm.
        const transient = err instanceof StoreUnavailableError || err instanceof FencedError;
        const delay = transient ? Math.min(5_000, (this.#retryMs.get(id) ?? 125) * 2) : 1000;
        if (transient) this.#retryMs.set(id, delay);
        if (transient) logger.warn({ requestId: id, err: (err as Error).message, retryInMs: delay }, 'reconcile deferred');
        else logger.error({ err, requestId: id }, 'reconcile failed');
        this.#wakeAt.set(id, clock.now() + delay);
      }
    }
    this.#deps.observeTick?.(performance.now() - tickStart);
    if (full) this.#armSafety();
    this.#armTimer();
  }

  async reconcileRequest(requestId: string): Promise<void> {
    const { store, clock, settings } = this.#deps;
    const outcome = await this.locks.run(requestId, async () => {
      const record = await store.getRequest(requestId);
      if (!record || record.state === 'DELETED') return undefined;
      const now = clock.now();
      const obs = await observeRequest(store, record, now, settings, this.executor, this.#deps.hosts);
      const outcome = stepRequest(obs, record, now);
      const changes: ChangeSet = {};
      if (outcome.request) changes.requests = [outcome.request];
      if (outcome.tasks.length > 0) changes.tasks = [...outcome.tasks];
      if (outcome.deletedTasks.length > 0) changes.deleteTasks = [...outcome.deletedTasks];
      const { pending } = outcome;
      if (pending.kind === 'UPDATED') changes.pending = [pending.pending];
      if (pending.kind === 'ENDED') {
        changes.deletePending = [requestId];
        changes.results = [{ requestId, deployId: pending.deployId, result: pending.result, progress: pending.progress }];
      }
      const hooks = stepWebhookEvents(obs, record, outcome);
      if (hooks.length > 0) changes.webhookEvents = hooks;
      if (Object.keys(changes).length > 0) await store.apply(changes);
      for (const note of outcome.notes ?? []) {
        const { level, msg, ...fields } = note;
        this.#deps.logger[level]({ requestId, ...fields }, msg);
      }
      this.#notePlacements(outcome, [obs.activeDeploy, obs.pendingDeploy]);
      this.#publish(requestId, outcome, obs.pending?.progress.phase, obs.pending?.progress.step);
      return outcome;
    });
    if (!outcome) {
      this.#wakeAt.delete(requestId);
      return;
    }
    if (outcome.wakeAt !== undefined) this.#wakeAt.set(requestId, outcome.wakeAt);
    else this.#wakeAt.delete(requestId);
    if (outcome.pending.kind === 'ENDED') {
      const { deployId, result } = outcome.pending;
      this.#deps.logger.info({ requestId, deployId, deployState: result.deployState }, result.message);
    }
    for (const action of outcome.actions) this.executor.run(requestId, action);
  }

  /**
   * Persisted: what the placed-but-not-started tasks will hold is counted on their hosts before
   * the next request is placed; tasks the step ended (lost with their host) or deleted are
   * forgotten.
   */
  #notePlacements(outcome: StepOutcome, deploys: (Deploy | undefined)[]): void {
    const { hosts } = this.#deps;
    for (const t of outcome.tasks) {
      const host = hostOf(t);
      if (!isLive(t.state)) this.executor.forget(t.taskId.id);
      else if (host !== undefined && t.handle === undefined && !t.cleanup) {
        const deploy = deploys.find((d) => d?.id === t.taskId.deployId);
        if (deploy) hosts.hold(t.taskId.id, host, demandOf(runDeploy(deploy, t.run)));
      }
    }
    for (const id of outcome.deletedTasks) this.executor.forget(id);
  }

  #publish(requestId: string, outcome: StepOutcome, phaseBefore?: string, stepBefore?: number): void {
    const at = outcome.now;
    for (const task of outcome.tasks) this.events.publish({ type: 'TASK', at, task });
    if (outcome.request) this.events.publish({ type: 'REQUEST', at, request: outcome.request });
    const { pending } = outcome;
    if (pending.kind === 'UPDATED') {
      const { progress, deployId } = pending.pending;
      if (progress.phase !== phaseBefore || progress.step !== stepBefore) {
        this.#deps.logger.info({ requestId, deployId, phase: progress.phase, step: progress.step }, 'deploy phase');
      }
      if (outcome.waiting) this.#deps.logger.debug({ requestId, deployId, phase: progress.phase, ...outcome.waiting }, 'deploy waits');
      this.events.publish({ type: 'DEPLOY', at, requestId, deployId, eventType: 'PROGRESS', progress });
    }
    if (pending.kind === 'ENDED') {
      this.events.publish({
        type: 'DEPLOY',
        at,
        requestId,
        deployId: pending.deployId,
        eventType: 'FINISHED',
        progress: pending.progress,
        result: pending.result,
      });
    }
  }

  /**
   * The next safety pass, a safety tick after this one ended: at 10,000 requests a pass takes
   * seconds, and passes started on a fixed interval would run back to back.
   */
  #armSafety(): void {
    if (this.#deps.timers === false || this.#closed) return;
    clearTimeout(this.#safety);
    this.#safety = setTimeout(() => this.wake(), this.#deps.safetyTickMillis ?? 5000);
    this.#safety.unref();
  }

  /** Look at a request again at `at` (an action that failed asks for it). */
  #wakeLater(requestId: string, at: number): void {
    if (this.#closed) return;
    const known = this.#wakeAt.get(requestId);
    if (known === undefined || at < known) this.#wakeAt.set(requestId, at);
    this.#armTimer();
  }

  #armTimer(): void {
    if (this.#deps.timers === false || this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#wakeAt.size === 0) return;
    const next = Math.min(...this.#wakeAt.values());
    const delay = Math.max(0, next - this.#deps.clock.now());
    this.#timer = setTimeout(
      () => {
        const now = this.#deps.clock.now();
        for (const [id, at] of this.#wakeAt) if (at <= now) this.wake(id);
        this.#armTimer();
      },
      Math.min(delay + 1, 2 ** 31 - 1),
    );
    this.#timer.unref();
  }

  /** Whether a wake is waiting to be handled (tests drive tick() until this is false). */
  get hasWork(): boolean {
    return this.#all || this.#dirty.size > 0;
  }

  /** Requests whose wake time has come, as the timer would do (tests with a manual clock). */
  wakeDue(): void {
    const now = this.#deps.clock.now();
    for (const [id, at] of this.#wakeAt) if (at <= now) this.wake(id);
  }

  /** Earliest time any request asked to be looked at again (tests). */
  get nextWakeAt(): number | undefined {
    return this.#wakeAt.size ? Math.min(...this.#wakeAt.values()) : undefined;
  }

  /** Wait until every action started so far has finished (tests, shutdown). */
  async idle(): Promise<void> {
    await this.executor.idle();
    if (this.#running) await this.#running;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unlisten();
    if (this.#timer) clearTimeout(this.#timer);
    clearTimeout(this.#safety);
    if (this.#running) await this.#running;
    await this.executor.close();
  }
}
