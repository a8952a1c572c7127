/*
 * Leadership: which of the schedulers sharing a store runs the loop.
 *
 * Every server serves the API; one of them holds the lease (store.cluster) and runs a *term*:
 * the reconcile loop with its executor, health probes, acceptance checks, runtime and load
 * balancer, built fresh when the lease is won and closed when it is lost. The others are
 * followers: they record intent in the store and wake the leader (relay.ts).
 *
 * - Follower: every campaign interval (and at once when the lease is released) it
 *   heartbeats and tries to take the lease. The store grants it when the lease expired, or at
 *   once when its holder has no connection left (it died).
 * - Leader: renews every renew interval, well inside the term. It believes it leads only
 *   until `validUntil` = (when it sent the last successful renewal) + term − margin, on this
 *   process's monotonic clock, which keeps running while the process is frozen. Every action
 *   of the term checks `guard()` just before it touches a task or the load balancer, and every
 *   write of the term carries the lease's epoch (fencedStore), checked by the store in the
 *   write's own transaction. So a leader frozen past its lease (SIGSTOP) cannot write once
 *   another has taken over, and, thawed, finds its guard false, refuses to act and steps
 *   down: the term closes (loop, probes, LB actions stop) and it goes on serving the API as a
 *   follower.
 * - A renewal that fails (store unreachable) is retried every interval; once `validUntil`
 *   passes the leader steps down, and campaigns again when the store is back.
 * - A term that fails to start (e.g. HAProxy unreachable) gives the lease back and waits a
 *   term before campaigning again, so another scheduler can try.
 * - SQLite (one scheduler per store): the lease is granted at start and never expires, the
 *   guard always holds, and the term runs until the server stops.
 */
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../logger.ts';
import type { Runtime } from '../runtimes/types.ts';
import type { ClusterStore, Fence, Lease, SchedulerInfo } from '../store/types.ts';
import type { LeaderView, SchedulerEntry } from '../core/leadership-view.ts';

export interface Term {
  close(): Promise<void>;
}

export interface LeadershipOptions<T extends Term> {
  cluster: ClusterStore;
  self: SchedulerInfo;
  /** lease term and renewal interval (renewals every renewMs, followers check as often, at most every second) */
  termMs: number;
  renewMs: number;
  logger: Logger;
  /** Build and start what only the leader runs. Its writes carry `lease`, its actions check `guard`. */
  startTerm(lease: Lease, guard: () => boolean): Promise<T>;
  /** monotonic millis (tests) */
  monotonic?: () => number;
}

export class NotLeaderError extends Error {
  constructor(what: string) {
    super(`Not the leader (any more): refused to ${what}`);
    this.name = 'NotLeaderError';
  }
}

type State = 'follower' | 'starting' | 'leader' | 'stepping-down' | 'closed';

export class Leadership<T extends Term> {
  readonly #o: LeadershipOptions<T>;
  readonly #now: () => number;
  readonly #campaignMs: number;
  #state: State = 'follower';
  #lease: Lease | undefined;
  #term: T | undefined;
  #validUntil = 0;
  #timer: NodeJS.Timeout | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #busy: Promise<void> = Promise.resolve();
  #notBefore = 0;
  #unlisten: (() => Promise<void>) | undefined;
  #leaderSince: number | undefined;

  constructor(options: LeadershipOptions<T>) {
    this.#o = options;
    this.#now = options.monotonic ?? (() => performance.now());
    this.#campaignMs = Math.min(options.renewMs, 1_000);
  }

  get self(): SchedulerInfo {
    return this.#o.self;
  }

  /** This server leads right now (its term is started and its lease valid by its own clock). */
  get leading(): boolean {
    return this.#state === 'leader' && this.#valid();
  }

  /** The running term (the leader's), if any. */
  get term(): T | undefined {
    return this.#state === 'leader' ? this.#term : undefined;
  }

  /**
   * Register, then campaign once: resolves as leader (term started) or follower. A term that
   * fails to start on this first try fails start-up (the error is thrown).
   */
  async start(): Promise<void> {
    const { cluster, self, logger } = this.#o;
    await cluster.heartbeat(self);
    if (cluster.shared) {
      this.#unlisten = await cluster.listen('fledge_lease', () => this.#kick());
    }
    await this.#serial(() => this.#campaign(true), true);
    if (this.#state === 'follower') logger.info({ schedulerId: self.id }, 'following: another scheduler leads');
    this.#schedule(this.#state === 'leader' ? this.#o.renewMs : this.#campaignMs);
  }

  /** What GET /api/state says about leadership. */
  async view(): Promise<{ leader: LeaderView | null; schedulers: SchedulerEntry[] }> {
    const { cluster, self } = this.#o;
    const [lease, schedulers] = await Promise.all([cluster.currentLease(), cluster.listSchedulers()]);
    const leader: LeaderView | null =
      lease && !lease.expired
        ? {
            self: lease.holder === self.id && this.leading,
            id: lease.holder,
            url: lease.url,
            since: lease.since,
            epoch: lease.epoch,
            expiresAt: lease.expiresAt,
          }
        : null;
    const staleMs = 3 * this.#o.renewMs;
    return {
      leader,
      schedulers: schedulers.map((s) => ({
        id: s.id,
        url: s.url,
        hostname: s.hostname,
        pid: s.pid,
        version: s.version,
        startedAt: s.startedAt,
        heartbeatAt: s.heartbeatAt,
        heartbeatAgeMs: s.heartbeatAgeMs,
        alive: s.heartbeatAgeMs <= staleMs,
        leader: s.id === leader?.id,
        self: s.id === self.id,
      })),
    };
  }

  /** A fenced write was refused: the store says another scheduler leads. */
  fenced(): void {
    if (this.#state !== 'leader') return;
    void this.#serial(() => this.#stepDown('a write was refused: the lease is held by another scheduler'));
  }

  /** Stop: close the term, give the lease up so a follower takes over now, unregister. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    clearTimeout(this.#timer);
    clearTimeout(this.#watchdog);
    await this.#busy;
    const lease = this.#lease;
    const wasLeading = this.#state === 'leader';
    this.#state = 'closed';
    await this.#closeTerm();
    await this.#unlisten?.().catch(() => undefined);
    const { cluster, self, logger } = this.#o;
    if (wasLeading && lease) await cluster.releaseLease(lease).catch((err: unknown) => logger.warn({ err }, 'could not release the lease'));
    await cluster.removeScheduler(self.id).catch(() => undefined);
  }

  // ---- internals ----------------------------------------------------------------------------

  #valid(): boolean {
    return !this.#o.cluster.shared || this.#now() < this.#validUntil;
  }

  /** One campaign/renewal at a time; failures are logged (rethrown only to `start()`). */
  #serial(fn: () => Promise<void>, rethrow = false): Promise<void> {
    const run = this.#busy.then(fn, fn);
    this.#busy = run.catch((err: unknown) => {
      if (!rethrow) this.#o.logger.error({ err }, 'leadership step failed');
    });
    return rethrow ? run : this.#busy;
  }

  #schedule(ms: number): void {
    if (this.#state === 'closed') return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      void this.#serial(() => this.#tick()).finally(() => this.#schedule(this.#state === 'leader' ? this.#o.renewMs : this.#campaignMs));
    }, ms);
    this.#timer.unref();
  }

  /** The lease was released (or changed): campaign now rather than at the next interval. */
  #kick(): void {
    if (this.#state !== 'follower') return;
    void this.#serial(() => this.#campaign(false));
  }

  async #tick(): Promise<void> {
    const { cluster, self, logger } = this.#o;
    await cluster.heartbeat(self).catch((err: unknown) => logger.debug({ err }, 'heartbeat failed'));
    if (this.#state === 'leader') await this.#renew();
    else if (this.#state === 'follower') await this.#campaign(false);
  }

  async #campaign(first: boolean): Promise<void> {
    const { cluster, self, termMs, logger } = this.#o;
    if (this.#state !== 'follower' || this.#now() < this.#notBefore) return;
    const sentAt = this.#now();
    let lease: Lease | undefined;
    try {
      lease = await cluster.acquireLease(self, termMs);
    } catch (err) {
      if (first) throw err;
      logger.warn({ err: errorMessage(err) }, 'could not campaign for the lease');
      return;
    }
    if (!lease) return;
    this.#lease = lease;
    this.#validUntil = sentAt + termMs - this.#margin();
    this.#state = 'starting';
    logger.info({ schedulerId: self.id, epoch: lease.epoch }, 'elected leader: starting the loop');
    const fence: Fence = { holder: lease.holder, epoch: lease.epoch };
    const guard = () => (this.#state === 'leader' || this.#state === 'starting') && this.#lease?.epoch === fence.epoch && this.#valid();
    try {
      this.#term = await this.#o.startTerm(lease, guard);
    } catch (err) {
      this.#state = 'follower';
      this.#lease = undefined;
      await cluster.releaseLease(fence).catch(() => undefined);
      if (first) throw err;
      this.#notBefore = this.#now() + Math.max(termMs, 5_000);
      logger.error({ err }, 'could not start leading; gave the lease back');
      return;
    }
    if (!this.#valid()) {
      // The start took longer than the lease: someone else may lead already.
      await this.#stepDown('the lease ran out while the loop was starting');
      return;
    }
    this.#state = 'leader';
    this.#leaderSince = lease.since;
    this.#armWatchdog();
    logger.info({ schedulerId: self.id, epoch: lease.epoch, since: lease.since }, 'leading');
  }

  async #renew(): Promise<void> {
    const { cluster, termMs, logger } = this.#o;
    const lease = this.#lease;
    if (!lease) return;
    if (!this.#valid()) return this.#stepDown('the lease ran out before it could be renewed');
    const sentAt = this.#now();
    let renewed: Lease | undefined;
    try {
      renewed = await cluster.renewLease(lease, termMs);
    } catch (err) {
      logger.warn({ err: errorMessage(err), validForMs: Math.round(this.#validUntil - this.#now()) }, 'could not renew the lease');
      if (!this.#valid()) await this.#stepDown('the lease ran out: the store was unreachable');
      return;
    }
    if (!renewed) return this.#stepDown('the lease was lost (it expired or another scheduler took it)');
    // A renewal that came back after the lease had run out locally does not revive it.
    if (!this.#valid()) return this.#stepDown('the lease ran out while renewing');
    this.#lease = renewed;
    this.#validUntil = sentAt + termMs - this.#margin();
    this.#armWatchdog();
  }

  #margin(): number {
    return Math.max(100, this.#o.termMs / 10);
  }

  /** Step down the moment the lease runs out locally, even if no renewal ever answers. */
  #armWatchdog(): void {
    clearTimeout(this.#watchdog);
    if (!this.#o.cluster.shared) return;
    this.#watchdog = setTimeout(
      () => {
        if (this.#state === 'leader' && !this.#valid()) void this.#serial(() => this.#stepDown('the lease ran out'));
        else if (this.#state === 'leader') this.#armWatchdog();
      },
      Math.max(1, this.#validUntil - this.#now() + 1),
    );
    this.#watchdog.unref();
  }

  async #stepDown(reason: string): Promise<void> {
    if (this.#state !== 'leader' && this.#state !== 'starting') return;
    const { logger, self } = this.#o;
    this.#state = 'stepping-down';
    clearTimeout(this.#watchdog);
    logger.warn({ schedulerId: self.id, epoch: this.#lease?.epoch, reason }, 'stepping down: stopping the loop, probes and LB actions');
    await this.#closeTerm();
    this.#lease = undefined;
    this.#leaderSince = undefined;
    if (this.#state === 'stepping-down') this.#state = 'follower';
    logger.info({ schedulerId: self.id }, 'following');
  }

  async #closeTerm(): Promise<void> {
    const term = this.#term;
    this.#term = undefined;
    if (!term) return;
    try {
      await term.close();
    } catch (err) {
      this.#o.logger.error({ err }, 'the term did not close cleanly');
    }
  }

  /** since when this server leads (undefined when it does not) */
  get leaderSince(): number | undefined {
    return this.#state === 'leader' ? this.#leaderSince : undefined;
  }
}

/** The runtime a term uses: starting, stopping and purging tasks needs the lease, checked just before. */
export function guardRuntime(runtime: Runtime, guard: () => boolean): Runtime {
  return new Proxy(runtime, {
    get(target, prop, receiver) {
      if (prop === 'start' || prop === 'stop' || prop === 'purge') {
        return (...args: unknown[]) => {
          if (!guard()) return Promise.reject(new NotLeaderError(`${String(prop)} a task`));
          return (target[prop] as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        };
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
