// The hosts Fledge runs tasks on, with their runtimes, their operator state (persisted) and
// their reachability (pinged). The engine places tasks from its snapshots (core/placement.ts);
// the composite runtime (host-runtime.ts) routes each task to its host; the API shows and
// changes it.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../core/clock.ts';
import { conflict, notFound } from '../core/errors.ts';
import { DEFAULT_RACK, type HostSnapshot, type TaskDemand } from '../core/placement.ts';
import type { Logger } from '../logger.ts';
import type { Capacity, PortRange } from '../runtimes/ledger.ts';
import type { Runtime } from '../runtimes/types.ts';
import type { Store } from '../store/types.ts';
import { transition } from './states.ts';
import type { HostAction, HostDefinition, HostRecord, HostState, HostStateUpdate, HostUsage } from './types.ts';

/** A runtime that runs one host's tasks and says what it holds. */
export interface HostedRuntime extends Runtime {
  hostUsage(): HostUsage;
  /** undefined until known (a Docker host reports it through `docker info`) */
  capacity(): Capacity | undefined;
  portRange(): PortRange;
  /** learn the capacity when it is not configured */
  loadCapacity?(): Promise<void>;
  /** why the capacity is not known yet */
  capacityError?(): string | undefined;
  /** ids of the tasks this installation has on the host (containers, running or not) */
  listTasks?(): Promise<string[]>;
}

export interface HostEntry {
  definition: HostDefinition;
  runtime: HostedRuntime;
  /** a cheap call proving the host answers; absent for the local host, which always does */
  ping?: (timeoutMs: number) => Promise<void>;
}

export interface Reachability {
  reachable: boolean;
  lastPingAt?: number;
  lastOkAt?: number;
  lastError?: string;
  /** since when it has not answered (set while it does not) */
  failingSince?: number;
}

export interface HostStatus {
  definition: HostDefinition;
  /** the operator's state, or UNREACHABLE while the host does not answer */
  state: HostState;
  record: HostRecord;
  reachability: Reachability;
  capacity?: Capacity;
  usage: HostUsage;
}

export interface HostRegistryOptions {
  store: Store;
  clock: Clock;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** a host that has not answered for this long is UNREACHABLE */
  unreachableMs: number;
  /** how often hosts are pinged (and decommissions completed); default min(2 s, unreachableMs / 3) */
  pingIntervalMs?: number;
  /**
   * Whether this server runs the tasks (leads). Several schedulers sharing a store: only the
   * leader's runtime knows a host's tasks, so only it completes a decommission. Default: always.
   */
  leading?: () => boolean;
}

const HISTORY_LIMIT = 50;

export type HostChange = 'silent' | 'answers' | 'state';

export class HostRegistry {
  readonly #entries: HostEntry[];
  readonly #byId = new Map<string, HostEntry>();
  readonly #o: HostRegistryOptions;
  readonly #records = new Map<string, HostRecord>();
  readonly #reach = new Map<string, Reachability>();
  readonly #pinging = new Set<string>();
  readonly #listeners: ((hostId: string, change: HostChange) => void)[] = [];
  /** tasks placed on a host and not started yet: what they will hold there */
  readonly #holds = new Map<string, { host: string; demand: TaskDemand }>();
  #writes: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(entries: HostEntry[], options: HostRegistryOptions) {
    this.#entries = entries;
    this.#o = options;
    for (const e of entries) {
      if (this.#byId.has(e.definition.id)) throw new Error(`host ${e.definition.id} is defined twice`);
      this.#byId.set(e.definition.id, e);
    }
  }

  /** Load the operator states (new hosts start ACTIVE), then ping every interval. */
  async start(): Promise<void> {
    const now = this.#o.clock.now();
    const stored = new Map((await this.#o.store.listHosts()).map((r) => [r.id, r]));
    for (const e of this.#entries) {
      const id = e.definition.id;
      let record = stored.get(id);
      if (!record) {
        const first: HostStateUpdate = { state: 'ACTIVE', timestamp: now, message: 'first seen' };
        record = { id, firstSeenAt: now, current: first, history: [first] };
        await this.#o.store.putHost(record);
      }
      this.#records.set(id, record);
      // A host gets the full grace from start-up before it counts as unreachable.
      this.#reach.set(id, { reachable: true, ...(e.ping ? { lastOkAt: now } : {}) });
    }
    await this.tick();
    const interval = this.#o.pingIntervalMs ?? Math.max(100, Math.min(2_000, Math.floor(this.#o.unreachableMs / 3)));
    this.#timer = setInterval(() => void this.tick(), interval);
    this.#timer.unref();
  }

  /** Ping the hosts (in parallel, bounded) and complete decommissions; exposed for tests. */
  async tick(): Promise<void> {
    if (this.#closed) return;
    await Promise.all(this.#entries.map((e) => this.#ping(e)));
    await this.#refresh();
    if (this.#o.leading?.() === false) return;
    for (const e of this.#entries) await this.#completeDecommission(e.definition.id);
  }

  /** States another server sharing the store changed (a freeze on a follower's API). */
  async #refresh(): Promise<void> {
    const run = this.#writes.then(async () => {
      for (const stored of await this.#o.store.listHosts()) {
        const mine = this.#records.get(stored.id);
        if (!mine || JSON.stringify(mine) === JSON.stringify(stored)) continue;
        this.#records.set(stored.id, stored);
        this.#changed(stored.id, 'state');
      }
    });
    this.#writes = run.catch(() => undefined);
    await run.catch((err: unknown) => this.#o.logger.warn({ err }, 'could not read the hosts from the store'));
  }

  async #ping(e: HostEntry): Promise<void> {
    const id = e.definition.id;
    if (!e.ping || this.#pinging.has(id)) return;
    this.#pinging.add(id);
    const timeoutMs = Math.max(200, Math.min(5_000, Math.floor(this.#o.unreachableMs / 2)));
    const before = this.#reach.get(id) ?? { reachable: true };
    let next: Reachability;
    try {
      await e.ping(timeoutMs);
      const now = this.#o.clock.now();
      next = { reachable: true, lastPingAt: now, lastOkAt: now };
      if (!e.runtime.capacity()) await e.runtime.loadCapacity?.();
    } catch (err) {
      const now = this.#o.clock.now();
      const lastOkAt = before.lastOkAt;
      const failingSince = before.failingSince ?? now;
      const silentFor = now - (lastOkAt ?? failingSince);
      next = {
        reachable: silentFor < this.#o.unreachableMs,
        lastPingAt: now,
        ...(lastOkAt !== undefined ? { lastOkAt } : {}),
        lastError: err instanceof Error ? err.message : String(err),
        failingSince,
      };
    } finally {
      this.#pinging.delete(id);
    }
    this.#reach.set(id, next);
    if (before.reachable && !next.reachable) {
      this.#o.logger.warn({ host: id, lastOkAt: next.lastOkAt, error: next.lastError }, `host ${id} is UNREACHABLE`);
      this.#changed(id, 'silent');
    } else if (!before.reachable && next.reachable) {
      this.#o.logger.info({ host: id }, `host ${id} answers again`);
      this.#changed(id, 'answers');
    }
  }

  /**
   * Whether a host answers now: pinged afresh, and again at the ping interval until it answers
   * or counts as UNREACHABLE (bounded by twice the grace). Hosts without a ping always answer.
   * A failed health check on a silent host is the host's loss, not the task's failure.
   */
  async answers(id: string): Promise<boolean> {
    const e = this.#byId.get(id);
    if (!e?.ping) return true;
    const timeoutMs = Math.max(200, Math.min(5_000, Math.floor(this.#o.unreachableMs / 2)));
    const interval = this.#o.pingIntervalMs ?? Math.max(100, Math.min(2_000, Math.floor(this.#o.unreachableMs / 3)));
    const tries = Math.ceil((2 * this.#o.unreachableMs) / interval) + 1;
    for (let i = 0; i < tries && !this.#closed; i++) {
      try {
        await e.ping(timeoutMs);
        return true;
      } catch {
        if (this.#reach.get(id)?.reachable === false) return false;
      }
      await sleep(interval);
    }
    return this.#reach.get(id)?.reachable !== false;
  }

  async #completeDecommission(id: string): Promise<void> {
    const e = this.#byId.get(id);
    if (!e || this.#records.get(id)?.current.state !== 'DECOMMISSIONING') return;
    // Checked again in the write queue: a release and a tick may both get here.
    const placedHere = () => [...this.#holds.values()].some((h) => h.host === id);
    await this.#update(id, (record) =>
      record.current.state === 'DECOMMISSIONING' && e.runtime.hostUsage().tasks.size === 0 && !placedHere()
        ? { state: 'DECOMMISSIONED', timestamp: this.#o.clock.now(), message: 'no tasks left' }
        : undefined,
    );
  }

  /** A task on this host ended: a decommission may be complete. */
  noteRelease(id: string): void {
    void this.#completeDecommission(id).catch((err: unknown) =>
      this.#o.logger.error({ err, host: id }, 'could not complete the decommission'),
    );
  }

  /** A host stopped answering, answers again, or its state changed. Returns how to stop listening. */
  onChange(listener: (hostId: string, change: HostChange) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  #changed(id: string, change: HostChange): void {
    for (const l of this.#listeners) {
      try {
        l(id, change);
      } catch (err) {
        this.#o.logger.error({ err, host: id }, 'host change listener failed');
      }
    }
  }

  /** The operator changes a host's state (decommission, freeze, activate). */
  async change(id: string, action: HostAction, message?: string, user?: string): Promise<HostStatus> {
    if (!this.#records.has(id)) throw notFound(`Host ${id} not found`);
    const refused = await this.#update(id, (record) => {
      const t = transition(record.current.state, action);
      if (!t.ok) return t.reason;
      return {
        state: t.next,
        timestamp: this.#o.clock.now(),
        ...(user !== undefined ? { user } : {}),
        ...(message !== undefined ? { message } : {}),
      };
    });
    if (refused) throw conflict(`Host ${id} ${refused}`);
    await this.#completeDecommission(id);
    return this.get(id) as HostStatus;
  }

  /**
   * Change a host's state in the write queue: `next` sees the current record and returns the
   * update, or why there is none (returned). One change at a time, so checks hold.
   */
  #update(id: string, next: (record: HostRecord) => HostStateUpdate | string | undefined): Promise<string | undefined> {
    const run = this.#writes.then(async () => {
      const record = this.#records.get(id);
      if (!record) return undefined;
      const update = next(record);
      if (update === undefined || typeof update === 'string') return update;
      const changed: HostRecord = { ...record, current: update, history: [update, ...record.history].slice(0, HISTORY_LIMIT) };
      await this.#o.store.putHost(changed);
      this.#records.set(id, changed);
      this.#o.logger.info({ host: id, state: update.state, message: update.message }, `host ${id} is ${update.state}`);
      this.#changed(id, 'state');
      return undefined;
    });
    this.#writes = run.catch(() => undefined);
    return run;
  }

  entries(): readonly HostEntry[] {
    return this.#entries;
  }

  entry(id: string): HostEntry | undefined {
    return this.#byId.get(id);
  }

  hasDocker(): boolean {
    return this.#entries.some((e) => e.definition.kind === 'docker');
  }

  get(id: string): HostStatus | undefined {
    const e = this.#byId.get(id);
    const record = this.#records.get(id);
    if (!e || !record) return undefined;
    const reachability = this.#reach.get(id) ?? { reachable: true };
    const capacity = e.runtime.capacity();
    return {
      definition: e.definition,
      state: reachability.reachable ? record.current.state : 'UNREACHABLE',
      record,
      reachability,
      ...(capacity ? { capacity } : {}),
      usage: e.runtime.hostUsage(),
    };
  }

  list(): HostStatus[] {
    return this.#entries.map((e) => this.get(e.definition.id)).filter((s): s is HostStatus => s !== undefined);
  }

  /**
   * A task was placed on `host` (and persisted) but not started yet: count what it will hold
   * there until its host's runtime does (the next placement, of any request, must see it).
   */
  hold(taskId: string, host: string, demand: TaskDemand): void {
    this.#holds.set(taskId, { host, demand });
  }

  /** Forget every hold: a (new) loop rebuilds them from the store when it starts. */
  resetHolds(): void {
    this.#holds.clear();
  }

  /** The task started (its runtime holds it now), or will never start. */
  drop(taskId: string): void {
    const held = this.#holds.get(taskId);
    if (!held) return;
    this.#holds.delete(taskId);
    // The last task placed on a decommissioning host that never started there.
    if (this.#records.get(held.host)?.current.state === 'DECOMMISSIONING') this.noteRelease(held.host);
  }

  /** Task ids the host's runtime holds or lists (its containers): what a sweep looks at. */
  async tasksOn(id: string): Promise<string[]> {
    const e = this.#byId.get(id);
    if (!e) return [];
    const listed = (await e.runtime.listTasks?.()) ?? [];
    return [...new Set([...e.runtime.hostUsage().tasks, ...listed])];
  }

  /** Every host as placement sees it: state, reachability, attributes, capacity, what is held. */
  snapshots(): HostSnapshot[] {
    const held = new Map<string, { taskId: string; demand: TaskDemand }[]>();
    for (const [taskId, h] of this.#holds) {
      const list = held.get(h.host);
      if (list) list.push({ taskId, demand: h.demand });
      else held.set(h.host, [{ taskId, demand: h.demand }]);
    }
    return this.#entries.map((e) => {
      const d = e.definition;
      const record = this.#records.get(d.id);
      const reach = this.#reach.get(d.id) ?? { reachable: true };
      const usage = e.runtime.hostUsage();
      const capacity = e.runtime.capacity();
      const capacityUnknown = capacity ? undefined : `docker info: ${e.runtime.capacityError?.() ?? 'no answer yet'}`;
      let cpus = Math.round(usage.cpus * 1000);
      let memoryMb = usage.memoryMb;
      let portsInRange = usage.portsInRange;
      let heldPorts = usage.heldPorts;
      const pending = held.get(d.id);
      if (pending) {
        const started = usage.tasks;
        for (const { taskId, demand } of pending) {
          if (started.has(taskId)) continue;
          cpus += Math.round(demand.cpus * 1000);
          memoryMb += demand.memoryMb;
          portsInRange += demand.numPorts + demand.literalPorts.filter((p) => p >= d.portRange.from && p <= d.portRange.to).length;
          if (demand.literalPorts.length > 0) heldPorts = new Set([...heldPorts, ...demand.literalPorts]);
        }
      }
      return {
        id: d.id,
        runs: d.kind,
        adminState: record?.current.state ?? 'ACTIVE',
        reachable: reach.reachable,
        ...(reach.lastError !== undefined && !reach.reachable ? { lastError: reach.lastError } : {}),
        rack: d.attributes.rack ?? DEFAULT_RACK,
        attributes: d.attributes,
        reservedAttributes: d.reservedAttributes ?? {},
        ...(capacity ? { capacity } : {}),
        ...(capacityUnknown ? { capacityUnknown } : {}),
        used: { cpus: cpus / 1000, memoryMb, portsInRange },
        portRange: d.portRange,
        heldPorts,
      };
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#writes;
  }
}
