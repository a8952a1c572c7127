// Drain bookkeeping shared by the builtin and haproxy balancers: who waits for which removal,
// and when an operation is done.
import { describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../logger.ts';
import { DrainBook, type DrainWaits } from './drains.ts';
import { OperationBook } from './operations.ts';

function setup(onTimeout?: () => void) {
  const ops = new OperationBook<DrainWaits<string>>(silentLogger);
  const drains = new DrainBook(ops, { timeoutMs: 1_000, ...(onTimeout ? { onTimeout } : {}) });
  const op = (id: string) => ops.create(id, 's', { pending: new Set() });
  return { ops, drains, op };
}

/** o1 waits for removals a and b, o2 for b alone. */
function sharedRemoval() {
  const { drains, op } = setup();
  const [o1, o2] = [op('o1'), op('o2')];
  const [a, b] = [drains.start('a'), drains.start('b')];
  drains.wait(o1, a);
  drains.wait(o1, b);
  drains.wait(o2, b);
  return { drains, o1, o2, a, b };
}

describe('DrainBook', () => {
  it('an operation succeeds once every removal it waits for is done, with the last one’s message', () => {
    const { drains, op } = setup();
    const o = op('o');
    const [a, b] = [drains.start('a'), drains.start('b')];
    drains.wait(o, a);
    drains.wait(o, b);
    drains.end(a);
    drains.settle(a);
    expect(o.state).toBe('WAITING');
    drains.end(b);
    drains.settle(b, 'drain timed out');
    expect(o).toMatchObject({ state: 'SUCCESS', message: 'drain timed out' });
    expect(drains.size).toBe(0);
  });

  it('one removal shared by two operations settles both', () => {
    const { drains, op } = setup();
    const [o1, o2] = [op('o1'), op('o2')];
    const a = drains.start('a');
    drains.wait(o1, a);
    drains.wait(o2, a);
    drains.settle(a);
    expect([o1.state, o2.state]).toEqual(['SUCCESS', 'SUCCESS']);
  });

  it('a released operation hands back only the drains nobody else waits for', () => {
    const { drains, o1, o2, b } = sharedRemoval();
    expect(drains.release(o1).map((d) => d.target)).toEqual(['a']);
    expect(o1.data.pending.size).toBe(0);
    drains.settle(b);
    expect([o1.state, o2.state]).toEqual(['WAITING', 'SUCCESS']);
  });

  it('an undone removal ends its operations CANCELED; their other removals go on for whoever else waits', () => {
    const { drains, o1, o2, a, b } = sharedRemoval();
    drains.end(a);
    drains.undo(a, 'added back');
    expect(o1).toMatchObject({ state: 'CANCELED', message: 'added back' });
    expect([...b.waiters]).toEqual([o2]);
    drains.settle(b);
    expect([o1.state, o2.state]).toEqual(['CANCELED', 'SUCCESS']);
  });

  it('a deadline: expired from then on; with onTimeout, a timer calls it, and end() stops it', () => {
    vi.useFakeTimers();
    try {
      const fired: string[] = [];
      const { drains } = setup(() => fired.push('timeout'));
      const a = drains.start('a');
      const b = drains.start('b');
      expect(drains.expired(a, a.deadline - 1)).toBe(false);
      expect(drains.expired(a, a.deadline)).toBe(true);
      drains.end(b);
      vi.advanceTimersByTime(1_000);
      expect(fired).toEqual(['timeout']);
    } finally {
      vi.useRealTimers();
    }
  });
});
