/*
 * The builtin balancer: an HTTP reverse proxy on one port that routes by the longest matching
 * service basePath and round-robins over the service's upstreams in rotation.
 *
 * The upstream is chosen per request, never per client connection, so a keep-alive client
 * stops reaching an upstream the moment it leaves rotation. Removal drains: the upstream
 * leaves rotation at once, its in-flight requests finish, and the operation reports SUCCESS
 * when none is left or the drain timeout cuts the rest. State is in memory only; Fledge
 * re-applies its LB state after a restart, and adding an upstream already present is a no-op.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger, type Logger } from '../../logger.ts';
import { OperationBook, statusOf, type Operation } from '../operations.ts';
import type {
  Balancer,
  BalancerStats,
  LbOperationStatus,
  LbService,
  Upstream,
} from '../types.ts';
import { clientResponseHeaders, requestHasBody, upstreamRequestHeaders } from './headers.ts';
import { normalizeBasePath } from '../base-path.ts';
import { invalidOperation } from '../validate.ts';
import { requestPath, RouteTable } from './route-table.ts';

export interface BuiltinBalancerOptions {
  /** default 127.0.0.1 */
  host?: string;
  /** default 7080; 0 picks a free port (tests), see address() */
  port?: number;
  /** how long a removed upstream may keep in-flight requests before they are cut; default 30 s */
  drainTimeoutMs?: number;
  /** a connect that takes longer counts as a connection error (retried when safe); default 5 s */
  connectTimeoutMs?: number;
  /** an upstream silent for this long gets the request answered 504 / cut; default 60 s */
  upstreamIdleTimeoutMs?: number;
  /** finished operations remembered for state() and idempotent re-apply; default 10 000 */
  maxRememberedOperations?: number;
  logger?: Logger;
}

export interface BuiltinBalancer extends Balancer {
  stats(): BalancerStats;
  /** Where the proxy listens (the bound port when started with port 0). */
  address(): { host: string; port: number };
}

// RFC 9110 §9.2.2: a failed attempt of these may be repeated elsewhere.
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** A reused keep-alive socket may have been closed by the upstream just now: allow a fresh try. */
const MAX_STALE_SOCKET_RETRIES = 2;

interface Attempt {
  /** abort the upstream exchange because the drain timed out */
  cut(): void;
}

interface UpstreamEntry {
  upstream: Upstream;
  agent: http.Agent;
  inFlight: number;
  total: number;
  attempts: Set<Attempt>;
  /** set while leaving rotation */
  drain?: Drain;
}

interface Drain {
  entry: UpstreamEntry;
  service: ServiceEntry;
  /** the operations waiting for this upstream to be gone */
  waiters: Set<Operation<OpData>>;
  timer: NodeJS.Timeout;
}

interface ServiceEntry {
  service: LbService;
  basePath: string;
  upstreams: Map<string, UpstreamEntry>;
  next: number;
}

interface OpData {
  /** drains the operation still waits for */
  pending: Set<Drain>;
}

export async function createBuiltinBalancer(options: BuiltinBalancerOptions = {}): Promise<BuiltinBalancer> {
  const balancer = new BuiltinProxyBalancer(options);
  await balancer.listen();
  return balancer;
}

class BuiltinProxyBalancer implements BuiltinBalancer {
  readonly #host: string;
  readonly #port: number;
  readonly #drainTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #logger: Logger;
  readonly #ops: OperationBook<OpData>;
  readonly #services = new Map<string, ServiceEntry>();
  readonly #routes = new RouteTable<ServiceEntry>();
  readonly #server: http.Server;
  #closed = false;

  constructor(options: BuiltinBalancerOptions) {
    this.#host = options.host ?? '127.0.0.1';
    this.#port = options.port ?? 7080;
    this.#drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
    this.#idleTimeoutMs = options.upstreamIdleTimeoutMs ?? 60_000;
    this.#logger = options.logger ?? silentLogger;
    this.#ops = new OperationBook(this.#logger, options.maxRememberedOperations);
    this.#server = http.createServer((req, res) => this.#proxy(req, res));
    // A broken client connection must never take the process down.
    this.#server.on('clientError', (_err, socket) => socket.destroy());
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
    const known = this.#ops.get(operationId);
    if (known) return statusOf(known);

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
      const drain = existing.drain ?? this.#startDrain(entry, existing);
      drain.waiters.add(op);
      op.data.pending.add(drain);
    }
    this.#logger.info(
      { operationId, serviceId: service.serviceId, add: add.map((u) => u.taskId), remove: remove.map((u) => u.taskId) },
      'LB operation applied',
    );
    // Removals with nothing in flight finish right here; this reports the result in one go.
    for (const drain of [...op.data.pending]) {
      if (drain.entry.inFlight === 0) this.#finishDrain(drain, 'drained');
    }
    if (op.state === 'WAITING' && op.data.pending.size === 0) this.#ops.finish(op, 'SUCCESS');
    else if (op.state === 'WAITING') this.#ops.emit(op);
    return statusOf(op);
  }

  async state(operationId: string): Promise<LbOperationStatus | undefined> {
    const op = this.#ops.get(operationId);
    return op ? statusOf(op) : undefined;
  }

  async cancel(operationId: string): Promise<LbOperationStatus | undefined> {
    const op = this.#ops.get(operationId);
    if (!op) return undefined;
    if (op.state !== 'WAITING') return statusOf(op);
    // Revert what is not done yet: upstreams still draining go back into rotation, unless
    // another operation also wants them gone.
    for (const drain of op.data.pending) {
      drain.waiters.delete(op);
      if (drain.waiters.size === 0) this.#abortDrain(drain);
    }
    op.data.pending.clear();
    this.#ops.finish(op, 'CANCELED', 'canceled; upstreams still draining were put back into rotation');
    this.#logger.info({ operationId }, 'LB operation canceled');
    return statusOf(op);
  }

  async upstreams(serviceId: string): Promise<Upstream[]> {
    const entry = this.#services.get(serviceId);
    if (!entry) return [];
    return [...entry.upstreams.values()].filter((u) => !u.drain).map((u) => ({ ...u.upstream }));
  }

  onChange(listener: (status: LbOperationStatus) => void): () => void {
    return this.#ops.onChange(listener);
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
        })),
      };
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Shutting down is not a failure of the operations: leave them be and tell no one.
    this.#ops.clearListeners();
    for (const entry of this.#services.values()) {
      for (const upstream of entry.upstreams.values()) {
        if (upstream.drain) clearTimeout(upstream.drain.timer);
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
      entry = { service, basePath, upstreams: new Map(), next: 0 };
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
      return;
    }
    if (existing) return;
    service.upstreams.set(upstream.taskId, {
      upstream: { ...upstream },
      agent: new http.Agent({ keepAlive: true, scheduling: 'lifo' }),
      inFlight: 0,
      total: 0,
      attempts: new Set(),
    });
  }

  #startDrain(service: ServiceEntry, entry: UpstreamEntry): Drain {
    const drain: Drain = {
      entry,
      service,
      waiters: new Set(),
      timer: setTimeout(() => this.#finishDrain(drain, 'timeout'), this.#drainTimeoutMs),
    };
    drain.timer.unref();
    entry.drain = drain;
    // Idle pooled connections will never be used again; in-flight ones finish first.
    for (const sockets of Object.values(entry.agent.freeSockets)) {
      for (const socket of sockets ?? []) socket.destroy();
    }
    return drain;
  }

  /** The upstream is gone: no in-flight request left, or the drain timeout cut the rest. */
  #finishDrain(drain: Drain, why: 'drained' | 'timeout'): void {
    const { entry, service } = drain;
    if (entry.drain !== drain) return;
    clearTimeout(drain.timer);
    entry.drain = undefined;
    service.upstreams.delete(entry.upstream.taskId);
    if (why === 'timeout' && entry.attempts.size > 0) {
      this.#logger.warn(
        { serviceId: service.service.serviceId, taskId: entry.upstream.taskId, cut: entry.attempts.size },
        'drain timed out: cutting in-flight requests',
      );
      for (const attempt of [...entry.attempts]) attempt.cut();
    }
    entry.agent.destroy();
    for (const op of drain.waiters) {
      op.data.pending.delete(drain);
      if (op.data.pending.size === 0) this.#ops.finish(op, 'SUCCESS', why === 'timeout' ? 'drain timed out; remaining requests were cut' : undefined);
    }
  }

  /** Back into rotation. `superseded`: a newer add wins, so the waiting removals are done. */
  #abortDrain(drain: Drain, superseded = false): void {
    const { entry } = drain;
    if (entry.drain !== drain) return;
    clearTimeout(drain.timer);
    entry.drain = undefined;
    if (!superseded) return;
    for (const op of drain.waiters) {
      op.data.pending.delete(drain);
      if (op.data.pending.size === 0) this.#ops.finish(op, 'SUCCESS', 'upstream was added back by a later operation');
    }
  }

  #pick(service: ServiceEntry, exclude: Set<UpstreamEntry>): UpstreamEntry | undefined {
    const candidates: UpstreamEntry[] = [];
    for (const entry of service.upstreams.values()) {
      if (!entry.drain && !exclude.has(entry)) candidates.push(entry);
    }
    if (candidates.length === 0) return undefined;
    const chosen = candidates[service.next % candidates.length];
    service.next = (service.next + 1) % 1_000_000_007;
    return chosen;
  }

  #attemptDone(entry: UpstreamEntry, attempt: Attempt): void {
    if (!entry.attempts.delete(attempt)) return;
    entry.inFlight -= 1;
    if (entry.drain && entry.inFlight === 0) this.#finishDrain(entry.drain, 'drained');
  }

  // ---- proxying --------------------------------------------------------------------------

  #proxy(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = requestPath(req.url);
    const service = this.#routes.match(path);
    if (!service) {
      reply(res, 503, { error: 'no service is routed at this path', path });
      return;
    }
    const serviceId = service.service.serviceId;
    const method = req.method ?? 'GET';
    const hasBody = requestHasBody(req);
    const headers = upstreamRequestHeaders(req);
    const target = forwardTarget(req.url);
    const tried = new Set<UpstreamEntry>();
    let staleRetries = 0;
    let lastError = '';
    let clientGone = false;
    let abortCurrent: (() => void) | undefined;

    res.on('close', () => {
      if (res.writableFinished) return;
      clientGone = true;
      abortCurrent?.();
    });
    // A body we cannot forward (no upstream) is discarded rather than left to stall the socket.
    if (!hasBody) req.resume();

    const attempt = (): void => {
      if (clientGone) return;
      const entry = this.#pick(service, tried);
      if (!entry) {
        if (tried.size === 0) {
          reply(res, 503, { error: 'service has no upstream in rotation', service: serviceId });
        } else {
          reply(res, 502, { error: 'no upstream of the service could be reached', service: serviceId, cause: lastError });
        }
        return;
      }
      tried.add(entry);
      entry.inFlight += 1;
      entry.total += 1;

      let connected = false;
      let bodyStarted = false;
      let responded = false;
      let stop: 'cut' | 'timeout' | undefined;
      let connectTimer: NodeJS.Timeout | undefined;
      const self: Attempt = {
        cut: () => {
          stop = 'cut';
          upstreamReq.destroy(new Error('upstream removed: drain timeout'));
        },
      };
      entry.attempts.add(self);
      const done = () => {
        clearTimeout(connectTimer);
        this.#attemptDone(entry, self);
      };

      const { host, port } = entry.upstream;
      const upstreamReq = http.request({ host, port, method, path: target, headers, agent: entry.agent });
      abortCurrent = () => upstreamReq.destroy();

      const startBody = () => {
        connected = true;
        clearTimeout(connectTimer);
        if (!hasBody) return;
        // Only now is the body consumed, so a refused connection can still be retried elsewhere.
        bodyStarted = true;
        req.pipe(upstreamReq);
      };
      upstreamReq.on('socket', (socket) => {
        if (!socket.connecting) return startBody();
        connectTimer = setTimeout(() => upstreamReq.destroy(new Error(`connect timed out after ${this.#connectTimeoutMs} ms`)), this.#connectTimeoutMs);
        socket.once('connect', startBody);
      });
      if (!hasBody) upstreamReq.end();
      upstreamReq.setTimeout(this.#idleTimeoutMs, () => {
        stop = 'timeout';
        upstreamReq.destroy(new Error(`upstream sent nothing for ${this.#idleTimeoutMs} ms`));
      });

      upstreamReq.on('response', (upstreamRes) => {
        responded = true;
        if (clientGone) {
          upstreamReq.destroy();
          return;
        }
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, clientResponseHeaders(upstreamRes));
        upstreamRes.pipe(res);
        // The upstream died mid-response: the client must see a broken response, not a short one.
        upstreamRes.on('aborted', () => res.destroy());
        upstreamRes.on('error', () => res.destroy());
        upstreamRes.on('end', done);
      });

      upstreamReq.on('error', (err) => {
        done();
        lastError = err.message;
        if (clientGone) return;
        if (responded) {
          res.destroy();
          return;
        }
        if (stop === 'cut') {
          reply(res, 502, { error: 'upstream was removed and its drain timed out', service: serviceId });
          return;
        }
        if (stop === 'timeout') {
          reply(res, 504, { error: 'upstream timed out', service: serviceId, upstream: entry.upstream.taskId });
          return;
        }
        // Safe to send elsewhere: nothing of the body is gone, and either the upstream never
        // got the request (no connection) or repeating it is harmless (idempotent).
        const safe = !bodyStarted && (!connected || IDEMPOTENT.has(method));
        this.#logger.debug({ serviceId, taskId: entry.upstream.taskId, err: err.message, retry: safe }, 'upstream request failed');
        if (!safe) {
          reply(res, 502, { error: 'upstream request failed', service: serviceId, upstream: entry.upstream.taskId, cause: err.message });
          return;
        }
        if (upstreamReq.reusedSocket && staleRetries < MAX_STALE_SOCKET_RETRIES) {
          // Likely a keep-alive socket the upstream had just closed; the upstream itself may be fine.
          staleRetries += 1;
          tried.delete(entry);
        }
        attempt();
      });
      upstreamReq.on('close', done);
    };
    attempt();
  }
}

/** The path is forwarded unchanged; an absolute-form target is reduced to path and query. */
function forwardTarget(url: string | undefined): string {
  if (!url) return '/';
  if (url.startsWith('/')) return url;
  try {
    const parsed = new URL(url);
    return `${parsed.pathname}${parsed.search}`;
  } catch {
    return '/';
  }
}

function reply(res: http.ServerResponse, status: number, body: Record<string, unknown>): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}
