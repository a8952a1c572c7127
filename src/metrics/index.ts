/*
 * What `/metrics` serves: process metrics (prom-client's defaults); state read from the store
 * at each scrape (tasks by state and host, requests by state, pending deploys, leadership);
 * what this process saw happen (deploys started and ended by result, phase and step
 * durations, the time from a failed deploy's end to the old deploy back at full capacity,
 * health-check results and latency, reconcile passes and ticks, store calls); and the leader's load
 * balancer traffic per service, deploy and task (lb.ts).
 *
 * Event-fed series count what this server saw since it started, like any Prometheus counter:
 * several schedulers each count the deploys they see (events are relayed to every server),
 * so read them from one server or take the max. Traffic is the leader's alone.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Balancer } from '../balancers/types.ts';
import { capacityOf } from '../core/capacity.ts';
import type { Decision, DeployResult } from '../core/deploy/types.ts';
import type { EventBus, FledgeEvent } from '../core/events.ts';
import type { HealthResult } from '../core/model.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/types.ts';
import { lbExposition } from './lb.ts';

export interface MetricsSources {
  store: Store;
  /** the leader's balancer, when this server leads and has one */
  balancer: () => Balancer | undefined;
  balancerKind: string;
  leading: () => boolean;
  logger: Logger;
}

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** a tick is meant to stay near the loop's 10 ms slice: finer buckets there */
const TICK_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const DEPLOY_SECONDS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
/** how often a request recovering from a failed deploy is looked at without an event */
const RECOVERY_POLL_MS = 1000;
/** a request that never gets back to full capacity is no longer watched after this */
const RECOVERY_GIVE_UP_MS = 60 * 60_000;

export class FledgeMetrics {
  readonly registry = new Registry();
  readonly #s: MetricsSources;
  readonly #deploysStarted: Counter;
  readonly #deploysEnded: Counter;
  readonly #deployDuration: Histogram;
  readonly #phaseDuration: Histogram;
  readonly #stepDuration: Histogram;
  readonly #recovery: Histogram;
  readonly #health: Counter;
  readonly #healthLatency: Histogram;
  readonly #pass: Histogram;
  readonly #tick: Histogram;
  readonly #store: Histogram;
  readonly #recovering = new Map<string, { endedAt: number; deployId: string; result: string }>();
  #recoveryTimer: NodeJS.Timeout | undefined;
  #checking = false;

  constructor(sources: MetricsSources) {
    this.#s = sources;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const { store } = sources;

    new Gauge({
      name: 'fledge_tasks',
      help: 'Live tasks by state and host',
      labelNames: ['state', 'host'],
      registers,
      async collect() {
        this.reset();
        for (const t of await store.listTasks({ live: true })) {
          const host = typeof t.handle?.host === 'string' ? t.handle.host : t.handle ? 'local' : 'unplaced';
          this.inc({ state: t.state, host });
        }
      },
    });
    new Gauge({
      name: 'fledge_requests',
      help: 'Requests by state',
      labelNames: ['state'],
      registers,
      async collect() {
        this.reset();
        for (const r of await store.listRequests()) if (r.state !== 'DELETED') this.inc({ state: r.state });
      },
    });
    new Gauge({
      name: 'fledge_pending_deploys',
      help: 'Pending deploys',
      registers,
      async collect() {
        this.set((await store.listPending()).length);
      },
    });
    new Gauge({
      name: 'fledge_leader',
      help: '1 when this server leads (runs the loop, the probes and the load balancer)',
      registers,
      collect() {
        this.set(sources.leading() ? 1 : 0);
      },
    });

    this.#deploysStarted = new Counter({ name: 'fledge_deploys_started_total', help: 'Deploys started', registers });
    this.#deploysEnded = new Counter({
      name: 'fledge_deploys_ended_total',
      help: 'Deploys ended, by result',
      labelNames: ['result'],
      registers,
    });
    this.#deployDuration = new Histogram({
      name: 'fledge_deploy_duration_seconds',
      help: 'From a deploy started to its result, by result',
      labelNames: ['result'],
      buckets: DEPLOY_SECONDS,
      registers,
    });
    this.#phaseDuration = new Histogram({
      name: 'fledge_deploy_phase_seconds',
      help: 'Time deploys spent in each phase of a step (from their decision logs)',
      labelNames: ['phase'],
      buckets: DEPLOY_SECONDS,
      registers,
    });
    this.#stepDuration = new Histogram({
      name: 'fledge_deploy_step_seconds',
      help: 'Time from a step started to the next one (or the result)',
      buckets: DEPLOY_SECONDS,
      registers,
    });
    this.#recovery = new Histogram({
      name: 'fledge_deploy_recovery_seconds',
      help: 'From a deploy that did not succeed ending to the active deploy back at full capacity (healthy, in the LB), by result',
      labelNames: ['result'],
      buckets: DEPLOY_SECONDS,
      registers,
    });
    this.#health = new Counter({
      name: 'fledge_health_checks_total',
      help: 'Health-check probes by result: ok (2xx), failed (another status), error (no answer), starting (port not open yet)',
      labelNames: ['result'],
      registers,
    });
    this.#healthLatency = new Histogram({
      name: 'fledge_health_check_duration_seconds',
      help: 'How long a health-check probe took',
      buckets: SECONDS,
      registers,
    });
    this.#pass = new Histogram({
      name: 'fledge_reconcile_pass_seconds',
      help: 'One reconcile pass of the loop (load, observe, step, persist for the requests woken)',
      buckets: SECONDS,
      registers,
    });
    this.#tick = new Histogram({
      name: 'fledge_reconcile_tick_seconds',
      help: 'One tick of the loop: the work of a pass between two turns it gives the event loop (how long it holds the API back)',
      buckets: TICK_SECONDS,
      registers,
    });
    this.#store = new Histogram({
      name: 'fledge_store_operation_seconds',
      help: 'Store calls by operation',
      labelNames: ['operation'],
      buckets: SECONDS,
      registers,
    });
  }

  // ---- what the rest of the server reports ----

  observeHealth(result: HealthResult | undefined): void {
    if (!result) return;
    const outcome =
      result.statusCode !== undefined
        ? result.statusCode >= 200 && result.statusCode < 300
          ? 'ok'
          : 'failed'
        : result.startup
          ? 'starting'
          : 'error';
    this.#health.inc({ result: outcome });
    this.#healthLatency.observe(result.durationMillis / 1000);
  }

  observePass(millis: number): void {
    this.#pass.observe(millis / 1000);
  }

  observeTick(millis: number): void {
    this.#tick.observe(millis / 1000);
  }

  observeStore(operation: string, millis: number): void {
    this.#store.observe({ operation }, millis / 1000);
  }

  /** Count deploys from the event stream; returns the unsubscribe. */
  watch(events: EventBus): () => void {
    const unsubscribe = events.subscribe((e) => this.#onEvent(e));
    return () => {
      unsubscribe();
      clearTimeout(this.#recoveryTimer);
    };
  }

  async render(): Promise<string> {
    const text = await this.registry.metrics();
    const balancer = this.#s.balancer();
    return balancer ? text + lbExposition(balancer.trafficTotals(), this.#s.balancerKind) : text;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  // ---- deploys ----

  #onEvent(e: FledgeEvent): void {
    if (e.type === 'DEPLOY' && e.eventType === 'STARTING') this.#deploysStarted.inc();
    if (e.type === 'DEPLOY' && e.eventType === 'FINISHED' && e.result)
      this.#ended(e.requestId, e.deployId, e.result, e.progress?.decisionLog ?? []);
    const requestId = e.type === 'TASK' ? e.task.taskId.requestId : e.type === 'REQUEST' ? e.request.request.id : undefined;
    if (requestId !== undefined && this.#recovering.has(requestId)) this.#scheduleRecoveryCheck(0);
  }

  #ended(requestId: string, deployId: string, result: DeployResult, log: readonly Decision[]): void {
    this.#deploysEnded.inc({ result: result.deployState });
    const started = log[0]?.at;
    if (started !== undefined) this.#deployDuration.observe({ result: result.deployState }, Math.max(0, result.timestamp - started) / 1000);
    for (const [phase, ms] of phaseSpans(log, result.timestamp)) this.#phaseDuration.observe({ phase }, ms / 1000);
    for (const ms of stepSpans(log, result.timestamp)) this.#stepDuration.observe(ms / 1000);
    if (result.deployState !== 'SUCCEEDED') {
      this.#recovering.set(requestId, { endedAt: result.timestamp, deployId, result: result.deployState });
      this.#scheduleRecoveryCheck(0);
    }
  }

  #scheduleRecoveryCheck(delay: number): void {
    if (this.#recoveryTimer && delay > 0) return;
    clearTimeout(this.#recoveryTimer);
    this.#recoveryTimer = setTimeout(() => {
      this.#recoveryTimer = undefined;
      void this.#checkRecovery();
    }, delay);
    this.#recoveryTimer.unref();
  }

  /** Requests back at full capacity since their failed deploy: observed once, then forgotten. */
  async #checkRecovery(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      for (const [requestId, r] of [...this.#recovering]) {
        const record = await this.#s.store.getRequest(requestId);
        if (!record || record.state === 'DELETED' || Date.now() - r.endedAt > RECOVERY_GIVE_UP_MS) {
          this.#recovering.delete(requestId);
          continue;
        }
        const tasks = await this.#s.store.listTasks({ requestId, live: true });
        const capacity = capacityOf(record.request, record.activeDeployId, tasks);
        if (capacity.full) {
          this.#recovery.observe({ result: r.result }, Math.max(0, Date.now() - r.endedAt) / 1000);
          this.#recovering.delete(requestId);
        }
      }
    } catch (err) {
      this.#s.logger.debug({ err }, 'metrics: could not look at a recovering request');
    } finally {
      this.#checking = false;
      if (this.#recovering.size > 0) this.#scheduleRecoveryCheck(RECOVERY_POLL_MS);
    }
  }
}

/** [phase, millis] for every phase span of a decision log (PHASE_CHANGED and ENDED entries). */
export function phaseSpans(log: readonly Decision[], endedAt: number): [string, number][] {
  const out: [string, number][] = [];
  let since = log[0]?.at;
  for (const d of log) {
    if (d.kind === 'PHASE_CHANGED' || d.kind === 'ENDED') {
      if (since !== undefined) out.push([d.from, Math.max(0, d.at - since)]);
      since = d.at;
    }
  }
  const last = log[log.length - 1];
  if (last && last.kind !== 'ENDED' && since !== undefined && last.phase !== 'END') out.push([last.phase, Math.max(0, endedAt - since)]);
  return out;
}

/** Millis of each step: from its first entry to the next step's first entry (or the end). */
export function stepSpans(log: readonly Decision[], endedAt: number): number[] {
  const out: number[] = [];
  let step: number | undefined;
  let since: number | undefined;
  for (const d of log) {
    if (d.step !== step) {
      if (step !== undefined && since !== undefined) out.push(Math.max(0, d.at - since));
      step = d.step;
      since = d.at;
    }
  }
  if (since !== undefined) out.push(Math.max(0, endedAt - since));
  return out;
}

/** The store calls worth timing (the loop's and the API's reads and writes; not locks). */
const TIMED = new Set([
  'apply',
  'getRequest',
  'listRequests',
  'getDeploy',
  'listDeployHistory',
  'getDeployHistory',
  'getPending',
  'listPending',
  'getTask',
  'listTasks',
  'findTokenByHash',
  'recordAudit',
  'listAudit',
]);

/** The store, with each call's duration reported by operation name. */
export function timedStore(store: Store, observe: (operation: string, millis: number) => void): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      const fn = (value as (...a: unknown[]) => unknown).bind(target);
      if (typeof prop !== 'string' || !TIMED.has(prop)) return fn;
      return (...args: unknown[]) => {
        const t0 = performance.now();
        const out = fn(...args);
        if (out instanceof Promise) return out.finally(() => observe(prop, performance.now() - t0));
        observe(prop, performance.now() - t0);
        return out;
      };
    },
  });
}
