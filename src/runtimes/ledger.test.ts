import { describe, expect, it } from 'vitest';
import { ResourceLedger } from './ledger.ts';

describe('ResourceLedger', () => {
  it('keeps its totals as reservations come, are replaced and go', () => {
    const ledger = new ResourceLedger({ cpus: 4, memoryMb: 1024 }, { from: 100, to: 199 });
    ledger.reserve('a', { cpus: 0.1, memoryMb: 64, ports: [100, 101] });
    ledger.reserve('b', { cpus: 0.2, memoryMb: 32, ports: [150, 500] });
    expect(ledger.used()).toEqual({ cpus: 0.3, memoryMb: 96 });
    expect(ledger.portsInRange()).toBe(3);
    expect(ledger.portsInUse()).toBe(4);
    expect([...ledger.taskIds()]).toEqual(['a', 'b']);

    ledger.reserve('a', { cpus: 1, memoryMb: 10, ports: [102] });
    expect(ledger.used()).toEqual({ cpus: 1.2, memoryMb: 42 });
    expect(ledger.portsInRange()).toBe(2);

    ledger.release('b');
    ledger.release('b');
    ledger.release('nobody');
    expect(ledger.used()).toEqual({ cpus: 1, memoryMb: 10 });
    expect(ledger.portsInRange()).toBe(1);
    expect([...ledger.heldPorts()]).toEqual([102]);
    expect(ledger.shortfall({ cpus: 3, memoryMb: 1000, numPorts: 99 })).toBeUndefined();
    expect(ledger.shortfall({ cpus: 3.1, memoryMb: 1, numPorts: 0 })).toMatch(/cpu/i);

    ledger.release('a');
    expect(ledger.used()).toEqual({ cpus: 0, memoryMb: 0 });
    expect(ledger.portsInRange()).toBe(0);
    expect(ledger.taskIds().size).toBe(0);
  });
});
