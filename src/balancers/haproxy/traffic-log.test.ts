import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../logger.ts';
import { HaproxyTrafficLog } from './traffic-log.ts';

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
