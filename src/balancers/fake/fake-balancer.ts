/*
 * A scriptable in-memory balancer for tests: no sockets, no timers, deterministic.
 *
 * By default every operation succeeds at once. A test can make operations stay WAITING until
 * it calls complete(), fail with a message, or make apply() throw (an unreachable balancer).
 * Rotation changes the way the builtin balancer does: adds and removals take effect at once,
 * a WAITING removal is put back on cancel, and a FAILED operation reverts everything it did.
 */
import { silentLogger, type Logger } from '../../logger.ts';
import { OperationBook, statusOf, type Operation } from '../operations.ts';
import { TrafficRecorder, type TrafficRecord } from '../traffic.ts';
import type {
  Balancer,
  BalancerStats,
  LbOperationStatus,
  LbRouting,
  LbService,
  ServiceTraffic,
  TrafficTotal,
  TrafficWindow,
  Upstream,
  UpstreamEvent,
} from '../types.ts';
import { normalizeBasePath } from '../base-path.ts';
import { invalidOperation } from '../validate.ts';

/** What apply() does with an operation. */
export type FakeBehaviour =
  /** SUCCESS at once */
  | 'succeed'
  /** WAITING until complete() or cancel() */
  | 'wait'
  /** FAILED at once with this message, nothing changed */
  | { fail: string }
  /** apply() rejects with this message and records nothing, like an unreachable balancer */
  | { throw: string };

export interface FakeOperationRecord {
  operationId: string;
  service: LbService;
  add: Upstream[];
  remove: Upstream[];
}

export interface FakeBalancerOptions {
  behaviour?: FakeBehaviour;
  logger?: Logger;
  /** the clock of the traffic counters */
  now?: () => number;
}

export interface FakeBalancer extends Balancer {
  /** Every operation applied, first applications only, in order (re-applies change nothing). */
  readonly operations: readonly FakeOperationRecord[];
  /** Every apply() call, including idempotent re-applies and ones that threw. */
  readonly applyCalls: readonly string[];
  /** Behaviour of operations with no script of their own. */
  setBehaviour(behaviour: FakeBehaviour): void;
  /** Behaviour of one operation id, consumed when it is applied. */
  script(operationId: string, behaviour: FakeBehaviour): void;
  /** Finish a WAITING operation. FAILED reverts its changes. */
  complete(operationId: string, state: 'SUCCESS' | 'FAILED', message?: string): LbOperationStatus;
  /** Report an upstream event (as a proxy does after failures in a row) to onUpstreamEvent listeners. */
  emitUpstreamEvent(event: UpstreamEvent): void;
  onUpstreamEvent(listener: (event: UpstreamEvent) => void): () => void;
  stats(): BalancerStats;
  /** Count a request as if it had gone through the balancer (no proxy here). */
  recordTraffic(record: TrafficRecord): void;
  /** The service's routing as the last operation applied to it gave it (a driver plays the proxy with it). */
  routing(serviceId: string): LbRouting | undefined;
}

interface OpData {
  serviceId: string;
  /** upstreams this operation actually added / took out of rotation, for reverting */
  added: Upstream[];
  removed: Upstream[];
}

interface FakeService {
  service: LbService;
  upstreams: Map<string, Upstream>;
}

export function createFakeBalancer(options: FakeBalancerOptions = {}): FakeBalancer {
  return new InMemoryFakeBalancer(options);
}

class InMemoryFakeBalancer implements FakeBalancer {
  readonly operations: FakeOperationRecord[] = [];
  readonly applyCalls: string[] = [];
  readonly #ops: OperationBook<OpData>;
  readonly #services = new Map<string, FakeService>();
  readonly #scripts = new Map<string, FakeBehaviour>();
  readonly #traffic: TrafficRecorder;
  readonly #upstreamListeners = new Set<(event: UpstreamEvent) => void>();
  #behaviour: FakeBehaviour;

  constructor(options: FakeBalancerOptions) {
    this.#behaviour = options.behaviour ?? 'succeed';
    this.#traffic = new TrafficRecorder(options.now);
    this.#ops = new OperationBook(options.logger ?? silentLogger, Number.MAX_SAFE_INTEGER);
  }

  setBehaviour(behaviour: FakeBehaviour): void {
    this.#behaviour = behaviour;
  }

  script(operationId: string, behaviour: FakeBehaviour): void {
    this.#scripts.set(operationId, behaviour);
  }

  async apply(operationId: string, service: LbService, add: Upstream[], remove: Upstream[]): Promise<LbOperationStatus> {
    this.applyCalls.push(operationId);
    const known = this.#ops.status(operationId);
    if (known) return known;

    const behaviour = this.#scripts.get(operationId) ?? this.#behaviour;
    this.#scripts.delete(operationId);
    if (typeof behaviour === 'object' && 'throw' in behaviour) throw new Error(behaviour.throw);

    this.operations.push({ operationId, service: { ...service }, add: add.map((u) => ({ ...u })), remove: remove.map((u) => ({ ...u })) });
    const op = this.#ops.create(operationId, service.serviceId, { serviceId: service.serviceId, added: [], removed: [] });
    const invalid = invalidOperation(service, add, remove, (basePath) => this.#owner(basePath));
    if (invalid) {
      this.#ops.finish(op, 'FAILED', invalid);
      return statusOf(op);
    }
    if (typeof behaviour === 'object') {
      this.#ops.finish(op, 'FAILED', behaviour.fail);
      return statusOf(op);
    }

    const entry = this.#service(service);
    for (const u of add) {
      const existing = entry.upstreams.get(u.taskId);
      if (existing) {
        // Added again: it takes the operation's weight (absent = the default).
        const { weight: _old, ...rest } = existing;
        entry.upstreams.set(u.taskId, { ...rest, ...(u.weight !== undefined ? { weight: u.weight } : {}) });
        continue;
      }
      entry.upstreams.set(u.taskId, { ...u });
      op.data.added.push({ ...u });
    }
    for (const u of remove) {
      const existing = entry.upstreams.get(u.taskId);
      if (!existing) continue;
      entry.upstreams.delete(u.taskId);
      op.data.removed.push(existing);
    }
    if (behaviour === 'succeed') this.#ops.finish(op, 'SUCCESS');
    else this.#ops.emit(op);
    return statusOf(op);
  }

  async state(operationId: string): Promise<LbOperationStatus | undefined> {
    return this.#ops.status(operationId);
  }

  cancel(operationId: string): Promise<LbOperationStatus | undefined> {
    return this.#ops.cancel(operationId, (op) => {
      this.#putBack(op, op.data.removed);
      this.#ops.finish(op, 'CANCELED');
    });
  }

  complete(operationId: string, state: 'SUCCESS' | 'FAILED', message?: string): LbOperationStatus {
    const op = this.#ops.get(operationId);
    if (!op) throw new Error(`fake balancer: no operation ${operationId}`);
    if (op.state !== 'WAITING') throw new Error(`fake balancer: operation ${operationId} is already ${op.state}`);
    if (state === 'FAILED') {
      const entry = this.#services.get(op.data.serviceId);
      for (const u of op.data.added) entry?.upstreams.delete(u.taskId);
      this.#putBack(op, op.data.removed);
    }
    this.#ops.finish(op, state, message);
    return statusOf(op);
  }

  async upstreams(serviceId: string): Promise<Upstream[]> {
    return [...(this.#services.get(serviceId)?.upstreams.values() ?? [])].map((u) => ({ ...u }));
  }

  onChange(listener: (status: LbOperationStatus) => void): () => void {
    return this.#ops.onChange(listener);
  }

  onUpstreamEvent(listener: (event: UpstreamEvent) => void): () => void {
    this.#upstreamListeners.add(listener);
    return () => this.#upstreamListeners.delete(listener);
  }

  emitUpstreamEvent(event: UpstreamEvent): void {
    for (const listener of [...this.#upstreamListeners]) listener(event);
  }

  stats(): BalancerStats {
    const out: BalancerStats = {};
    for (const [serviceId, entry] of this.#services) {
      out[serviceId] = {
        basePath: normalizeBasePath(entry.service.basePath),
        upstreams: [...entry.upstreams.values()].map((u) => ({ ...u, inRotation: true, inFlight: 0, total: 0 })),
      };
    }
    return out;
  }

  recordTraffic(record: TrafficRecord): void {
    this.#traffic.record(record);
  }

  routing(serviceId: string): LbRouting | undefined {
    return this.#services.get(serviceId)?.service.routing;
  }

  async traffic(serviceId: string, window: TrafficWindow): Promise<ServiceTraffic> {
    return this.#traffic.window(serviceId, window);
  }

  trafficTotals(): TrafficTotal[] {
    return this.#traffic.totals();
  }

  async close(): Promise<void> {
    this.#ops.clearListeners();
    this.#upstreamListeners.clear();
  }

  #putBack(op: Operation<OpData>, upstreams: Upstream[]): void {
    const entry = this.#services.get(op.data.serviceId);
    if (!entry) return;
    for (const u of upstreams) entry.upstreams.set(u.taskId, u);
  }

  #service(service: LbService): FakeService {
    let entry = this.#services.get(service.serviceId);
    if (!entry) {
      entry = { service, upstreams: new Map() };
      this.#services.set(service.serviceId, entry);
    }
    entry.service = service;
    return entry;
  }

  #owner(basePath: string): string | undefined {
    for (const [serviceId, entry] of this.#services) {
      if (normalizeBasePath(entry.service.basePath) === basePath) return serviceId;
    }
    return undefined;
  }
}
