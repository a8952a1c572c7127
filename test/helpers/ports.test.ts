import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { candidateBlocks, ephemeralRange, freePort, listeningPorts, reservePorts } from './ports.ts';

describe('test ports', () => {
  it('reads the ephemeral range, and falls back when the file is missing', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ports-'));
    const file = path.join(dir, 'range');
    writeFileSync(file, '32768\t60999\n');
    expect(ephemeralRange(file)).toEqual({ from: 32768, to: 60999 });
    expect(ephemeralRange(path.join(dir, 'missing'))).toEqual({ from: 49152, to: 65535 });
  });

  it('never offers a block inside the ephemeral range or Fledge default ports', () => {
    const starts = candidateBlocks({ from: 32768, to: 60999 });
    expect(starts.length).toBeGreaterThan(100);
    for (const from of starts) {
      const to = from + 49;
      expect(to < 32768 || from > 60999).toBe(true);
      expect(to < 31000 || from > 31999).toBe(true);
      expect(from).toBeGreaterThanOrEqual(10000);
    }
  });

  it('hands out disjoint ranges outside the ephemeral range, recorded with this pid', () => {
    const ephemeral = ephemeralRange();
    const ranges = [reservePorts(10), reservePorts(120), reservePorts(50)];
    for (const r of ranges) expect(r.to < ephemeral.from || r.from > ephemeral.to).toBe(true);
    const sorted = [...ranges].sort((a, b) => a.from - b.from);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.from).toBeGreaterThan(sorted[i - 1]!.to);
    const dir = path.join(tmpdir(), 'fledge-test-ports');
    const mine = readdirSync(dir).filter((f) => readFileSync(path.join(dir, f), 'utf8').startsWith(`${process.pid}:`));
    expect(mine.length).toBeGreaterThanOrEqual(1 + 3 + 1);
  });

  it('takes over a block whose owner is gone', () => {
    const dir = path.join(tmpdir(), 'fledge-test-ports');
    const starts = candidateBlocks();
    // mark every block as held by a dead process: the next reservation must take one over
    const dead = 2 ** 22 + 12345; // above pid_max's default: no such process
    const planted: string[] = [];
    for (const s of starts) {
      const file = path.join(dir, String(s));
      try {
        writeFileSync(file, `${dead}:1`, { flag: 'wx' });
        planted.push(file);
      } catch {
        // held by a live owner (this or another suite): leave it
      }
    }
    const range = reservePorts(5);
    expect(readFileSync(path.join(dir, String(range.from)), 'utf8').startsWith(`${process.pid}:`)).toBe(true);
    for (const file of planted) {
      try {
        if (readFileSync(file, 'utf8').startsWith(`${dead}:`)) rmSync(file);
      } catch {
        // gone
      }
    }
  });

  it('sees a listener, and never hands out a block where something listens', async () => {
    const held = reservePorts(1);
    const stray = createServer();
    await new Promise<void>((resolve) => stray.listen(held.from, '127.0.0.1', resolve));
    try {
      expect(listeningPorts().has(held.from)).toBe(true);
    } finally {
      await new Promise((resolve) => stray.close(resolve));
    }
    // every candidate port taken by a listener (a process an ended test left behind): none given
    const busy = new Set(candidateBlocks().flatMap((s) => Array.from({ length: 50 }, (_, i) => s + i)));
    expect(() => reservePorts(1, { busy })).toThrow(/no 1 free test ports/);
  });

  it('freePort gives a bindable reserved port each time', async () => {
    const a = await freePort();
    const b = await freePort();
    expect(a).not.toBe(b);
    const ephemeral = ephemeralRange();
    expect(a < ephemeral.from || a > ephemeral.to).toBe(true);
  });
});
