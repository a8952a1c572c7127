// Leadership against a scriptable cluster (the real one is tested on PostgreSQL in
// src/store/postgres and test/integration/ha.test.ts): when a term starts and stops, what the
// guard says, and what happens when renewals fail or the process is frozen past its lease.
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../logger.ts';
import type { ClusterStore, Fence, Lease, SchedulerInfo } from '../store/types.ts';
import { Leadership, guardRuntime, NotLeaderError, type Term } from './leadership.ts';
import type { Runtime } from '../runtimes/types.ts';

const self: SchedulerInfo = { id: 'me', url: 'http://me', hostname: 'h', machine: 'm', pid: 1, dataDir: '/d', version: 't' };

class ScriptedCluster implements ClusterStore {
  shared = true;
  holder: string | undefined;
  epoch = 0;
  renewFails = false;
  acquireFails = false;
  released: Fence[] = [];
  async acquireLease(s: SchedulerInfo): Promise<Lease | undefined> {
    if (this.acquireFails) throw new Error('store unreachable');
    if (this.holder && this.holder !== s.id) return undefined;
    if (this.holder !== s.id) {
      this.holder = s.id;
      this.epoch++;
    }
    return { holder: s.id, epoch: this.epoch, url: s.url, since: 1, expiresAt: 2 };
  }
  async renewLease(f: Fence): Promise<Lease | undefined> {
    if (this.renewFails) throw new Error('store unreachable');
    return this.holder === f.holder && this.epoch === f.epoch ? { ...f, url: self.url, since: 1, expiresAt: 3 } : undefined;
  }
  async releaseLease(f: Fence) {
    this.released.push(f);
    if (this.holder === f.holder && this.epoch === f.epoch) this.holder = undefined;
  }
  async currentLease() {
    return this.holder ? { holder: this.holder, epoch: this.epoch, url: 'http://x', since: 1, expiresAt: 2, expired: false } : undefined;
  }
  async heartbeat() {}
  async listSchedulers() {
    return [];
  }
  async removeScheduler() {}
  async notify() {}
  async listen() {
    return async () => {};
  }
}

class RecordingTerm implements Term {
  closed = false;
  constructor(readonly guard: () => boolean) {}
  async close() {
    this.closed = true;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let skew = 0;
const open: Leadership<RecordingTerm>[] = [];
afterEach(async () => {
  for (const l of open.splice(0)) await l.close();
  skew = 0;
});

function make(cluster: ClusterStore, startTerm?: (lease: Lease, guard: () => boolean) => Promise<RecordingTerm>) {
  const terms: RecordingTerm[] = [];
  const l = new Leadership<RecordingTerm>({
    cluster,
    self,
    termMs: 400,
    renewMs: 40,
    logger: silentLogger,
    monotonic: () => performance.now() + skew,
    startTerm:
      startTerm ??
      (async (_lease, guard) => {
        const t = new RecordingTerm(guard);
        terms.push(t);
        return t;
      }),
  });
  open.push(l);
  return { l, terms };
}

describe('leadership', () => {
  it('leads when it wins the lease, and steps down (closing its term) when the lease is taken', async () => {
    const cluster = new ScriptedCluster();
    const { l, terms } = make(cluster);
    await l.start();
    expect(l.leading).toBe(true);
    expect(terms).toHaveLength(1);
    expect(terms[0]!.guard()).toBe(true);
    await sleep(120); // renewals keep it
    expect(l.leading).toBe(true);
    cluster.holder = 'other';
    cluster.epoch++;
    await expect.poll(() => terms[0]!.closed, { timeout: 2_000 }).toBe(true);
    expect(l.leading).toBe(false);
    expect(terms[0]!.guard()).toBe(false);
  });

  it('follows while another holds the lease, and leads once it is free', async () => {
    const cluster = new ScriptedCluster();
    cluster.holder = 'other';
    cluster.epoch = 5;
    const { l, terms } = make(cluster);
    await l.start();
    expect(l.leading).toBe(false);
    expect(terms).toHaveLength(0);
    cluster.holder = undefined;
    await expect.poll(() => l.leading, { timeout: 2_000 }).toBe(true);
    expect(terms).toHaveLength(1);
  });

  it('frozen past its lease: the guard is false at once on thaw, before any renewal, and it steps down', async () => {
    const cluster = new ScriptedCluster();
    const { l, terms } = make(cluster);
    await l.start();
    const guard = terms[0]!.guard;
    expect(guard()).toBe(true);
    skew = 10_000; // the monotonic clock ran on while the process was stopped
    expect(guard()).toBe(false);
    expect(l.leading).toBe(false);
    await expect.poll(() => terms[0]!.closed, { timeout: 2_000 }).toBe(true);
  });

  it('keeps leading through failed renewals while the lease is valid, then steps down, and leads again when the store is back', async () => {
    const cluster = new ScriptedCluster();
    const { l, terms } = make(cluster);
    await l.start();
    cluster.renewFails = true;
    await sleep(100);
    expect(l.leading).toBe(true);
    await expect.poll(() => terms[0]!.closed, { timeout: 3_000 }).toBe(true);
    cluster.renewFails = false;
    cluster.holder = undefined; // it expired in the store too
    await expect.poll(() => terms.length, { timeout: 3_000 }).toBe(2);
    expect(l.leading).toBe(true);
  });

  it('gives the lease back when its term fails to start after start-up, and waits before trying again', async () => {
    const cluster = new ScriptedCluster();
    cluster.holder = 'other';
    cluster.epoch = 1;
    let attempts = 0;
    const { l } = make(cluster, async () => {
      attempts++;
      throw new Error('haproxy unreachable');
    });
    await l.start();
    cluster.holder = undefined;
    await expect.poll(() => attempts, { timeout: 2_000 }).toBe(1);
    expect(cluster.released).toHaveLength(1);
    expect(cluster.holder).toBeUndefined();
    await sleep(300); // the back-off (a term, at least 5 s) holds it off
    expect(attempts).toBe(1);
    expect(l.leading).toBe(false);
  });

  it('fails start-up when the first term cannot start', async () => {
    const { l } = make(new ScriptedCluster(), async () => {
      throw new Error('port in use');
    });
    await expect(l.start()).rejects.toThrow('port in use');
  });

  it('with a store only one scheduler uses, leads at once and the guard never expires', async () => {
    const cluster = new ScriptedCluster();
    cluster.shared = false;
    const { l, terms } = make(cluster);
    await l.start();
    skew = 1e9;
    expect(terms[0]!.guard()).toBe(true);
    expect(l.leading).toBe(true);
  });

  it('releases the lease when it stops', async () => {
    const cluster = new ScriptedCluster();
    const { l, terms } = make(cluster);
    await l.start();
    await l.close();
    expect(terms[0]!.closed).toBe(true);
    expect(cluster.holder).toBeUndefined();
  });

  it('refuses runtime starts and stops once the guard is false', async () => {
    let ok = true;
    const calls: string[] = [];
    const runtime = {
      start: async () => {
        calls.push('start');
        return { kind: 'waiting', reason: 'x' };
      },
      stop: async () => void calls.push('stop'),
      inspect: async () => ({ state: 'lost', message: 'x' }),
    } as unknown as Runtime;
    const guarded = guardRuntime(runtime, () => ok);
    await guarded.start({} as never);
    ok = false;
    await expect(guarded.start({} as never)).rejects.toBeInstanceOf(NotLeaderError);
    await expect(guarded.stop({ taskId: 't' }, 0)).rejects.toBeInstanceOf(NotLeaderError);
    expect((await guarded.inspect({ taskId: 't' })).state).toBe('lost');
    expect(calls).toEqual(['start']);
  });
});
