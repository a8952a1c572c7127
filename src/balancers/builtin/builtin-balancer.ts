/*
 * The builtin balancer: an HTTP reverse proxy on one port that routes by the longest matching
 * service basePath and round-robins over the service's upstreams in rotation.
 *
 * The upstream is chosen per request, never per client connection, so a keep-alive client
 * stops reaching an upstream the moment it leaves rotation. Passive protection: an upstream
 * that fails (refused, reset, timed out) several times in a row is skipped for a short,
 * doubling back-off and the engine is told (onUpstreamEvent); a request that could not have
 * been processed is sent once to another upstream (proxy.ts says exactly when). Removal drains: the upstream
 * leaves rotation at once, its in-flight requests finish, and the operation reports SUCCESS
 * when none is left or the drain timeout cuts the rest. State is in memory only; Fledge
 * re-applies its LB state after a restart, and adding an upstream already present is a no-op.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { silentLogger, type Logger } from '../../logger.ts';
import { TrustList } from '../../net/addresses.ts';
import { normalizeBasePath } from '../base-path.ts';
import { clientLimits, type ClientLimits } from '../limits.ts';
import { DrainBook, type Drain as DrainOf, type DrainWaits } from '../drains.ts';
import { OperationBook, statusOf } from '../operations.ts';
import { inVersion, type Version } from '../routing.ts';
import { TrafficRecorder } from '../traffic.ts';
import type {
  Balancer,
  BalancerStats,
  LbOperationStatus,
  LbService,
  ServiceTraffic,
  TrafficTotal,
  TrafficWindow,
  Upstream,
  UpstreamEvent,
} from '../types.ts';
import { upstreamWeight } from '../types.ts';
import { invalidOperation } from '../validate.ts';
import { proxyRequest, proxyUpgrade, type Attempt, type ProxyContext, type ServiceRoute, type UpstreamTarget } from './proxy.ts';
import { RouteTable } from './route-table.ts';

/** Client limits (limits.ts): a larger head is a 431, a slow one a 408; beyond maxConnections, refused. */
export interface BuiltinBalancerOptions extends Partial<ClientLimits> {
  /** default 127.0.0.1 */
  host?: string;
  /** default 7080; 0 picks a free port (tests), see address() */
  port?: number;
  /** how long a removed upstream may keep in-flight requests before they are cut; default 30 s */
  drainTimeoutMs?: number;
  /** a connect that takes longer counts as a connection error (retried when safe); default 5 s */
  connectTimeoutMs?: number;
  /**
   * an upstream silent for this long (before or during its response) fails the attempt: an
   * idempotent request that got nothing yet is sent to another upstream, others get a 504 (or
   * are cut mid-response); default 15 s
   */
  upstreamTimeoutMs?: number;
  /** passive protection: failures in a row that take an upstream out of rotation; 0 = never; default 3 */
  ejectAfterFailures?: number;
  /** how long the first time out of rotation lasts; doubled each time in a row, up to ejectMaxMs; default 1 s */
  ejectBaseMs?: number;
  /** default 30 s */
  ejectMaxMs?: number;
  /** finished operations remembered for state() and idempotent re-apply; default 10 000 */
  maxRememberedOperations?: number;
  /** proxies (IPs, CIDR ranges) whose X-Forwarded-* headers are kept; others' are dropped */
  trustForwardedFrom?: readonly string[];
  logger?: Logger;
  /** the clock of the traffic counters (tests) */
  now?: () => number;
}

export interface BuiltinBalancer extends Balancer {
  stats(): BalancerStats;
  onUpstreamEvent(listener: (event: UpstreamEvent) => void): () => void;
  /** Where the proxy listens (the bound port when started with port 0). */
  address(): { host: string; port: number };
}

interface UpstreamEntry extends UpstreamTarget {
  /** the builtin changes an upstream's weight in place (the proxy only reads it) */
  upstream: Upstream;
  /** smooth weighted round-robin: this upstream's running score */
  current: number;
  inFlight: number;
  total: number;
  attempts: Set<Attempt>;
  /** set while leaving rotation */
  drain?: Drain;
  /** passive protection: failures in a row, and out of rotation until then after too many */
  failures: number;
  ejectedUntil?: number;
  /** times out of rotation in a row (the back-off doubles with each) */
  ejections: number;
  ejectTimer?: NodeJS.Timeout;
}

/** What a drain takes out of rotation. */
interface Draining {
  entry: UpstreamEntry;
  service: ServiceEntry;
}

type Drain = DrainOf<Draining>;

interface ServiceEntry extends ServiceRoute {
  service: LbService;
  basePath: string;
  upstreams: Map<string, UpstreamEntry>;
}

export async function createBuiltinBalancer(options: BuiltinBalancerOptions = {}): Promise<BuiltinBalancer> {
  const balancer = new BuiltinProxyBalancer(options);
  await balancer.listen();
  return balancer;
}

class BuiltinProxyBalancer implements BuiltinBalancer {
  readonly #host: string;
  readonly #port: number;
  readonly #ejectAfter: number;
  readonly #ejectBaseMs: number;
  readonly #ejectMaxMs: number;
  readonly #upstreamListeners = new Set<(event: UpstreamEvent) => void>();
  readonly #logger: Logger;
  readonly #ops: OperationBook<DrainWaits<Draining>>;
  readonly #drains: DrainBook<Draining>;
  readonly #services = new Map<string, ServiceEntry>();
  readonly #routes = new RouteTable<ServiceEntry>();
  readonly #server: http.Server;
  readonly #traffic: TrafficRecorder;
  #closed = false;

  constructor(options: BuiltinBalancerOptions) {
    this.#host = options.host ?? '127.0.0.1';
    this.#port = options.port ?? 7080;
    this.#ejectAfter = options.ejectAfterFailures ?? 3;
    this.#ejectBaseMs = options.ejectBaseMs ?? 1_000;
    this.#ejectMaxMs = options.ejectMaxMs ?? 30_000;
    this.#logger = options.logger ?? silentLogger;
    this.#ops = new OperationBook(this.#logger, options.maxRememberedOperations);
    this.#drains = new DrainBook(this.#ops, {
      timeoutMs: options.drainTimeoutMs ?? 30_000,
      onTimeout: (drain) => this.#finishDrain(drain, 'timeout'),
    });
    const traffic = new TrafficRecorder(options.now);
    this.#traffic = traffic;
    const ctx: ProxyContext = {
      route: (path) => this.#routes.match(path),
      connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
      upstreamTimeoutMs: options.upstreamTimeoutMs ?? 15_000,
      trust: new TrustList(options.trustForwardedFrom ?? []),
      logger: this.#logger,
      observe: (a) =>
        traffic.record({
          serviceId: a.serviceId,
          taskId: a.upstream.taskId,
          ...(a.upstream.deployId !== undefined ? { deployId: a.upstream.deployId } : {}),
          status: a.status,
          latencyMs: a.latencyMs,
          upstreamError: a.upstreamError,
        }),
    };
    const limits = clientLimits(options);
    const headersTimeout = limits.headerTimeoutMs;
    this.#server = http.createServer(
      {
        maxHeaderSize: limits.maxHeaderBytes,
        headersTimeout,
        requestTimeout: Math.max(headersTimeout, limits.requestTimeoutMs),
        keepAliveTimeout: limits.keepAliveTimeoutMs,
        // Node checks the two timeouts above this often (30 s by default): keep it well under them.
        connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(headersTimeout / 4))),
      },
      (req, res) => proxyRequest(ctx, req, res),
    );
    this.#server.maxConnections = limits.maxConnections;
    this.#server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => proxyUpgrade(ctx, req, socket, head));
    // A broken client connection must never take the process down. Where no response has
    // started, the client learns why (431 headers too large, 408 too slow, 400 malformed).
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable || (socket as Duplex & { _httpMessage?: unknown })._httpMessage) {
        socket.destroy();
        return;
      }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      // A client that does not read the answer does not keep the socket either.
      setTimeout(() => socket.destroy(), 1_000).unref();
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.#server.once('error', onError);
      this.#server.listen(this.#port, this.#host, () => {
        this.#server.off('error', onError);
        this.#server.on('error', (err) => this.#logger.error({ err }, 'builtin balancer server error'));
        this.#logger.info(this.address(), 'builtin balancer listening');
        resolve();
      });
    });
  }

  address(): { host: string; port: number } {
    const bound = this.#server.address() as AddressInfo | null;
    return { host: this.#host, port: bound?.port ?? this.#port };
  }

  // ---- operations ------------------------------------------------------------------------

  async apply(operationId: string, service: LbService, add: Upstream[], remove: Upstream[]): Promise<LbOperationStatus> {
    const known = this.#ops.status(operationId);
    if (known) return known;
    if (this.#closed) throw new Error('the builtin balancer is closed');

    const op = this.#ops.create(operationId, service.serviceId, { pending: new Set() });
    const invalid = invalidOperation(service, add, remove, (basePath) => this.#routes.owner(basePath));
    if (invalid) {
      this.#logger.warn({ operationId, serviceId: service.serviceId, reason: invalid }, 'LB operation rejected');
      this.#ops.finish(op, 'FAILED', invalid);
      return statusOf(op);
    }

    const entry = this.#serviceEntry(service);
    for (const upstream of add) this.#add(entry, upstream);
    for (const upstream of remove) {
      const existing = entry.upstreams.get(upstream.taskId);
      if (!existing) continue;
      this.#drains.wait(op, existing.drain ?? this.#startDrain(entry, existing));
    }
    this.#logger.info(
      { operationId, serviceId: service.serviceId, add: add.map((u) => u.taskId), remove: remove.map((u) => u.taskId) },
      'LB operation applied',
    );
    // Removals with nothing in flight finish right here; this reports the result in one go.
    for (const drain of [...op.data.pending]) {
      if (drain.target.entry.inFlight === 0) this.#finishDrain(drain, 'drained');
    }
    if (op.state === 'WAITING' && op.data.pending.size === 0) this.#ops.finish(op, 'SUCCESS');
    else if (op.state === 'WAITING') this.#ops.emit(op);
    return statusOf(op);
  }

  async state(operationId: string): Promise<LbOperationStatus | undefined> {
    return this.#ops.status(operationId);
  }

  cancel(operationId: string): Promise<LbOperationStatus | undefined> {
    return this.#ops.cancel(operationId, (op) => {
      // Revert what is not done yet: upstreams still draining go back into rotation, unless
      // another operation also wants them gone.
      for (const drain of this.#drains.release(op)) this.#abortDrain(drain);
      this.#ops.finish(op, 'CANCELED', 'canceled; upstreams still draining were put back into rotation');
      this.#logger.info({ operationId }, 'LB operation canceled');
    });
  }

  async upstreams(serviceId: string): Promise<Upstream[]> {
    const entry = this.#services.get(serviceId);
    if (!entry) return [];
    return [...entry.upstreams.values()].filter((u) => !u.drain).map((u) => ({ ...u.upstream }));
  }

  onChange(listener: (status: LbOperationStatus) => void): () => void {
    return this.#ops.onChange(listener);
  }

  onUpstreamEvent(listener: (event: UpstreamEvent) => void): () => void {
    this.#upstreamListeners.add(listener);
    return () => this.#upstreamListeners.delete(listener);
  }

  stats(): BalancerStats {
    const out: BalancerStats = {};
    for (const [serviceId, entry] of this.#services) {
      out[serviceId] = {
        basePath: entry.basePath,
        upstreams: [...entry.upstreams.values()].map((u) => ({
          ...u.upstream,
          inRotation: !u.drain,
          inFlight: u.inFlight,
          total: u.total,
          ...(u.ejectedUntil !== undefined ? { ejectedUntil: u.ejectedUntil } : {}),
        })),
      };
    }
    return out;
  }

  async traffic(serviceId: string, window: TrafficWindow): Promise<ServiceTraffic> {
    return this.#traffic.window(serviceId, window);
  }

  trafficTotals(): TrafficTotal[] {
    return this.#traffic.totals();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Shutting down is not a failure of the operations: leave them be and tell no one.
    this.#ops.clearListeners();
    this.#upstreamListeners.clear();
    this.#drains.stopTimers();
    for (const entry of this.#services.values()) {
      for (const upstream of entry.upstreams.values()) {
        clearTimeout(upstream.ejectTimer);
        upstream.agent.destroy();
      }
    }
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  #serviceEntry(service: LbService): ServiceEntry {
    const basePath = normalizeBasePath(service.basePath);
    let entry = this.#services.get(service.serviceId);
    if (!entry) {
      entry = this.#newServiceEntry(service, basePath);
      this.#services.set(service.serviceId, entry);
      this.#routes.set(service.serviceId, basePath, entry);
    } else if (entry.basePath !== basePath) {
      entry.basePath = basePath;
      this.#routes.set(service.serviceId, basePath, entry);
    }
    entry.service = service;
    return entry;
  }

  #add(service: ServiceEntry, upstream: Upstream): void {
    const existing = service.upstreams.get(upstream.taskId);
    if (existing?.drain) {
      // Added back while draining: the newer operation wins, so the drain is moot and the
      // operations waiting for it are done.
      this.#abortDrain(existing.drain, true);
      this.#reweigh(existing, upstream);
      return;
    }
    if (existing) {
      this.#reweigh(existing, upstream);
      return;
    }
    service.upstreams.set(upstream.taskId, {
      upstream: { ...upstream },
      current: 0,
      agent: new http.Agent({ keepAlive: true, scheduling: 'lifo' }),
      inFlight: 0,
      total: 0,
      attempts: new Set(),
      failures: 0,
      ejections: 0,
    });
  }

  /** Added again: it takes the operation's weight (absent = the default). */
  #reweigh(entry: UpstreamEntry, upstream: Upstream): void {
    const { weight: _old, ...rest } = entry.upstream;
    entry.upstream = { ...rest, ...(upstream.weight !== undefined ? { weight: upstream.weight } : {}) };
    entry.current = 0;
  }

  /**
   * Passive protection: a response ends a run of failures (and, once back from a time out of
   * rotation, the doubling of the next one); `ejectAfter` failures in a row take the upstream
   * out of rotation for a back-off, and the engine is told, so it probes the task at once.
   * Health verdicts stay the engine's: only a failed health check removes the task.
   */
  #report(service: ServiceEntry, entry: UpstreamEntry, outcome: 'ok' | { failure: string }): void {
    if (outcome === 'ok') {
      entry.failures = 0;
      if (entry.ejectedUntil === undefined) entry.ejections = 0;
      return;
    }
    entry.failures += 1;
    if (this.#ejectAfter <= 0 || entry.failures < this.#ejectAfter || entry.ejectedUntil !== undefined || entry.drain) return;
    const backoff = Math.min(this.#ejectMaxMs, this.#ejectBaseMs * 2 ** entry.ejections);
    entry.ejections += 1;
    const until = Date.now() + backoff;
    entry.ejectedUntil = until;
    const event: UpstreamEvent = {
      kind: 'EJECTED',
      serviceId: service.service.serviceId,
      taskId: entry.upstream.taskId,
      failures: entry.failures,
      reason: outcome.failure,
      until,
      backoffMs: backoff,
    };
    this.#logger.warn(event, 'upstream out of rotation after failures in a row');
    entry.ejectTimer = setTimeout(() => {
      entry.ejectTimer = undefined;
      entry.ejectedUntil = undefined;
      // Half-open: one more failure and it is out again, for twice as long.
      entry.failures = Math.max(0, this.#ejectAfter - 1);
      if (service.upstreams.get(entry.upstream.taskId) !== entry) return;
      this.#emitUpstream({
        kind: 'RESTORED',
        serviceId: service.service.serviceId,
        taskId: entry.upstream.taskId,
        failures: 0,
        reason: 'back-off over',
      });
    }, backoff);
    entry.ejectTimer.unref();
    this.#emitUpstream(event);
  }

  #emitUpstream(event: UpstreamEvent): void {
    for (const listener of [...this.#upstreamListeners]) {
      try {
        listener(event);
      } catch (err) {
        this.#logger.error({ err, taskId: event.taskId }, 'balancer upstream listener threw');
      }
    }
  }

  #startDrain(service: ServiceEntry, entry: UpstreamEntry): Drain {
    const drain = this.#drains.start({ entry, service });
    entry.drain = drain;
    // Idle pooled connections will never be used again; in-flight ones finish first.
    for (const sockets of Object.values(entry.agent.freeSockets)) {
      for (const socket of sockets ?? []) socket.destroy();
    }
    return drain;
  }

  /** The upstream is gone: no in-flight request left, or the drain timeout cut the rest. */
  #finishDrain(drain: Drain, why: 'drained' | 'timeout'): void {
    const { entry, service } = drain.target;
    if (entry.drain !== drain) return;
    this.#drains.end(drain);
    entry.drain = undefined;
    service.upstreams.delete(entry.upstream.taskId);
    this.#traffic.retire(service.service.serviceId, entry.upstream.taskId);
    clearTimeout(entry.ejectTimer);
    if (why === 'timeout' && entry.attempts.size > 0) {
      this.#logger.warn(
        { serviceId: service.service.serviceId, taskId: entry.upstream.taskId, cut: entry.attempts.size },
        'drain timed out: cutting in-flight requests',
      );
      for (const attempt of [...entry.attempts]) attempt.cut();
    }
    entry.agent.destroy();
    this.#drains.settle(drain, why === 'timeout' ? 'drain timed out; remaining requests were cut' : undefined);
  }

  /** Back into rotation. `superseded`: a newer add wins, so the waiting removals are undone. */
  #abortDrain(drain: Drain, superseded = false): void {
    const { entry } = drain.target;
    if (entry.drain !== drain) return;
    this.#drains.end(drain);
    entry.drain = undefined;
    if (superseded) this.#drains.undo(drain, 'removal undone: the upstream was added back by a later operation');
  }

  #newServiceEntry(service: LbService, basePath: string): ServiceEntry {
    const entry: ServiceEntry = {
      service,
      basePath,
      upstreams: new Map(),
      get serviceId() {
        return entry.service.serviceId;
      },
      get routing() {
        return entry.service.routing;
      },
      begin: (exclude, attempt, version) => {
        const chosen = pick(entry, exclude, version);
        if (!chosen) return undefined;
        chosen.inFlight += 1;
        chosen.total += 1;
        chosen.attempts.add(attempt);
        return chosen;
      },
      end: (target, attempt) => {
        const upstream = target as UpstreamEntry;
        if (!upstream.attempts.delete(attempt)) return;
        upstream.inFlight -= 1;
        if (upstream.drain && upstream.inFlight === 0) this.#finishDrain(upstream.drain, 'drained');
      },
      report: (target, outcome) => this.#report(entry, target as UpstreamEntry, outcome),
    };
    return entry;
  }
}

/**
 * Smooth weighted round-robin (nginx's) over the upstreams in rotation, chosen per request
 * (never per connection): each pick adds every candidate's weight to its score, takes the
 * highest and subtracts the candidates' total from it, so the split is exact over every cycle
 * of sum-of-weights picks and interleaved within it. Weight 0 gets nothing. Those out of
 * rotation for failing are skipped — unless all are, then they are used anyway: an upstream
 * that may answer beats a certain 503. A routed request (routing.ts) picks within its
 * version, and among all upstreams when its version has none in rotation (or only weight 0).
 */
function pick(service: ServiceEntry, exclude: ReadonlySet<UpstreamTarget>, version?: Version): UpstreamEntry | undefined {
  const routing = service.service.routing;
  if (routing && version) {
    const own = pickAmong(service, exclude, (e) => inVersion(routing, version, e.upstream.deployId));
    if (own) return own;
  }
  return pickAmong(service, exclude, () => true);
}

function pickAmong(
  service: ServiceEntry,
  exclude: ReadonlySet<UpstreamTarget>,
  wanted: (entry: UpstreamEntry) => boolean,
): UpstreamEntry | undefined {
  const candidates: UpstreamEntry[] = [];
  const ejected: UpstreamEntry[] = [];
  for (const entry of service.upstreams.values()) {
    if (entry.drain || exclude.has(entry) || !wanted(entry)) continue;
    (entry.ejectedUntil === undefined ? candidates : ejected).push(entry);
  }
  if (candidates.length === 0) candidates.push(...ejected);
  // A retry (something excluded) takes the next in line without moving the scores, so the
  // split of requests stays what the weights say.
  if (exclude.size > 0) {
    let next: UpstreamEntry | undefined;
    for (const entry of candidates) {
      const weight = upstreamWeight(entry.upstream);
      if (weight > 0 && (!next || entry.current + weight > next.current + upstreamWeight(next.upstream))) next = entry;
    }
    return next;
  }
  let total = 0;
  let chosen: UpstreamEntry | undefined;
  for (const entry of candidates) {
    const weight = upstreamWeight(entry.upstream);
    if (weight <= 0) continue;
    entry.current += weight;
    total += weight;
    if (!chosen || entry.current > chosen.current) chosen = entry;
  }
  if (!chosen) return undefined;
  chosen.current -= total;
  return chosen;
}
