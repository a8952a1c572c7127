import { afterEach, describe, expect, it } from 'vitest';
import { ProbeScheduler } from './probe-scheduler.ts';
import { waitFor } from '../test-servers.test-helper.ts';

const open: ProbeScheduler[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

/** A scheduler whose probes end when the test says so. */
function make(concurrency: number) {
  const ran: string[] = [];
  const ends = new Map<string, () => void>();
  let running = 0;
  let maxRunning = 0;
  const s = new ProbeScheduler({
    now: Date.now,
    concurrency,
    run: (key) =>
      new Promise<void>((resolve) => {
        ran.push(key);
        maxRunning = Math.max(maxRunning, ++running);
        ends.set(key, () => {
          running--;
          resolve();
        });
      }),
  });
  open.push(s);
  const end = (key: string) => ends.get(key)?.();
  return { s, ran, end, max: () => maxRunning };
}

describe('ProbeScheduler', () => {
  it('runs due keys in due order, later ones when they are due', async () => {
    const { s, ran, end } = make(10);
    const now = Date.now();
    s.schedule('c', now + 40);
    s.schedule('a', now - 10);
    s.schedule('b', now);
    await waitFor(() => ran.length === 2, 2_000, 'the two due keys');
    expect(ran).toEqual(['a', 'b']);
    await waitFor(() => ran.length === 3, 2_000, 'the later key');
    expect(ran).toEqual(['a', 'b', 'c']);
    for (const k of ran) end(k);
  });

  it('a new schedule of a key replaces the earlier one; cancel drops it', async () => {
    const { s, ran, end } = make(10);
    const now = Date.now();
    s.schedule('a', now + 10_000);
    s.schedule('a', now);
    s.schedule('b', now + 20);
    s.cancel('b');
    await waitFor(() => ran.length === 1, 2_000, 'a');
    await new Promise((r) => setTimeout(r, 60));
    expect(ran).toEqual(['a']);
    expect(s.dueAt('a')).toBeUndefined();
    end('a');
  });

  it('keeps at most `concurrency` in flight; the rest wait their turn in order', async () => {
    const { s, ran, end, max } = make(2);
    const now = Date.now();
    for (const k of ['a', 'b', 'c', 'd', 'e']) s.schedule(k, now);
    await waitFor(() => ran.length === 2, 2_000, 'two running');
    await new Promise((r) => setTimeout(r, 30));
    expect(ran).toEqual(['a', 'b']);
    end('a');
    await waitFor(() => ran.length === 3, 2_000, 'a third once one ended');
    end('b');
    end('c');
    await waitFor(() => ran.length === 5, 2_000, 'all');
    expect(ran).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(max()).toBe(2);
    end('d');
    end('e');
  });

  it('never runs one key twice at once: a schedule made while it runs waits for it to end', async () => {
    const { s, ran, end } = make(5);
    s.schedule('a', Date.now());
    await waitFor(() => ran.length === 1, 2_000, 'a');
    expect(s.inFlight('a')).toBe(true);
    s.schedule('a', Date.now());
    await new Promise((r) => setTimeout(r, 30));
    expect(ran).toEqual(['a']);
    end('a');
    await waitFor(() => ran.length === 2, 2_000, 'a again');
    end('a');
  });

  it('stays small under many reschedules', () => {
    const { s } = make(1);
    const far = Date.now() + 60_000;
    for (let i = 0; i < 10_000; i++) s.schedule(`k${i % 10}`, far + i);
    expect(s.size).toEqual({ scheduled: 10, running: 0 });
  });

  it('close() waits for the runs in flight and schedules nothing more', async () => {
    const { s, ran, end } = make(5);
    s.schedule('a', Date.now());
    await waitFor(() => ran.length === 1, 2_000, 'a');
    let closed = false;
    const closing = s.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(closed).toBe(false);
    end('a');
    await closing;
    s.schedule('b', Date.now());
    await new Promise((r) => setTimeout(r, 20));
    expect(ran).toEqual(['a']);
  });
});
