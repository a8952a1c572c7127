// The cluster of a store only one scheduler uses (SQLite, guarded by the data dir's pid file):
// its lease is granted at once and never expires, its notifications stay in the process.
import { EventEmitter } from 'node:events';
import { FencedError, type ClusterStore, type Fence, type Lease, type SchedulerInfo, type SchedulerView } from './types.ts';

/** "never": a lease nobody else can take; JSON-safe, unlike Infinity */
const NEVER = Number.MAX_SAFE_INTEGER;

export class LocalCluster implements ClusterStore {
  readonly shared = false;
  readonly #now: () => number;
  readonly #bus = new EventEmitter();
  readonly #schedulers = new Map<string, SchedulerView>();
  #lease: Lease | undefined;
  #epoch = 0;

  constructor(now: () => number) {
    this.#now = now;
    this.#bus.setMaxListeners(0);
  }

  async acquireLease(self: SchedulerInfo): Promise<Lease | undefined> {
    if (this.#lease && this.#lease.holder !== self.id) return undefined;
    this.#lease ??= { holder: self.id, epoch: ++this.#epoch, url: self.url, since: this.#now(), expiresAt: NEVER };
    return { ...this.#lease };
  }

  async renewLease(fence: Fence): Promise<Lease | undefined> {
    return this.holds(fence) ? { ...(this.#lease as Lease) } : undefined;
  }

  async releaseLease(fence: Fence): Promise<void> {
    if (this.holds(fence)) this.#lease = undefined;
  }

  async currentLease(): Promise<(Lease & { expired: boolean }) | undefined> {
    return this.#lease ? { ...this.#lease, expired: false } : undefined;
  }

  holds(fence: Fence): boolean {
    return this.#lease?.holder === fence.holder && this.#lease.epoch === fence.epoch;
  }

  /** The fence check of a write (the store's apply). */
  check(fence: Fence | undefined): void {
    if (fence && !this.holds(fence)) throw new FencedError(fence);
  }

  async heartbeat(self: SchedulerInfo): Promise<void> {
    const now = this.#now();
    this.#schedulers.set(self.id, {
      ...self,
      startedAt: this.#schedulers.get(self.id)?.startedAt ?? now,
      heartbeatAt: now,
      heartbeatAgeMs: 0,
    });
  }

  async listSchedulers(): Promise<SchedulerView[]> {
    const now = this.#now();
    return [...this.#schedulers.values()].map((s) => ({ ...s, heartbeatAgeMs: Math.max(0, now - s.heartbeatAt) }));
  }

  async removeScheduler(id: string): Promise<void> {
    this.#schedulers.delete(id);
  }

  async notify(channel: string, payload: string): Promise<void> {
    queueMicrotask(() => this.#bus.emit(channel, payload));
  }

  async listen(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>> {
    this.#bus.on(channel, onMessage);
    return async () => void this.#bus.off(channel, onMessage);
  }
}
