import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../logger.ts';
import { HaproxyTrafficLog, SeenCounters } from './traffic-log.ts';

// A stand-in for HAProxy's stats socket: answers `show info` and records how the ring is read.
async function fakeStatsSocket() {
  const dir = mkdtempSync(path.join(tmpdir(), 'fledge-ring-'));
  const socketPath = path.join(dir, 'stats.sock');
  const reads: string[] = [];
  const server = net.createServer((socket) => {
    socket.on('data', (chunk) => {
      const command = chunk.toString('utf8').trim();
      if (command === 'show info') socket.end('Name: HAProxy\nPid: 4242\n');
      else reads.push(command);
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    reads,
    close: () => new Promise<void>((resolve) => server.close(() => (rmSync(dir, { recursive: true, force: true }), resolve()))),
  };
}

const closing: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c();
});

async function firstRead(fresh: boolean | undefined): Promise<string> {
  const fake = await fakeStatsSocket();
  closing.push(fake.close);
  const log = new HaproxyTrafficLog({
    socketPath: fake.socketPath,
    resolve: () => undefined,
    onRecord: () => undefined,
    logger: silentLogger,
  });
  closing.push(() => log.close());
  log.start(fresh === undefined ? {} : { fresh });
  for (let i = 0; i < 200 && fake.reads.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  return fake.reads[0] ?? '';
}

describe('HAProxy traffic log reader', () => {
  it('reads a worker Fledge just started from the start of its ring: requests served before it connected count', async () => {
    expect(await firstRead(true)).toBe('show events fledge_traffic -w');
  });

  it('reads an adopted worker (or one it did not see start) from the ring’s end: earlier traffic is not Fledge’s', async () => {
    expect(await firstRead(undefined)).toBe('show events fledge_traffic -w -n');
    expect(await firstRead(false)).toBe('show events fledge_traffic -w -n');
  });
});

describe('SeenCounters', () => {
  it('counts every line once whatever order the counters arrive in, and drops repeats', () => {
    const seen = new SeenCounters();
    // request 3 finished before 1 and 2 (a slower task served those): none is lost
    expect([3, 1, 2, 5, 4].map((c) => seen.add(c))).toEqual([true, true, true, true, true]);
    // a reconnection re-reads the ring from its start: nothing counts twice
    expect([1, 2, 3, 4, 5].map((c) => seen.add(c))).toEqual([false, false, false, false, false]);
    expect(seen.add(6)).toBe(true);
  });

  it('stays bounded: counters far below the highest read as seen', () => {
    const seen = new SeenCounters();
    for (let c = 0; c < SeenCounters.KEEP * 2; c++) seen.add(c);
    expect(seen.add(10)).toBe(false);
    expect(seen.add(SeenCounters.KEEP * 2 + 1)).toBe(true);
  });
});
