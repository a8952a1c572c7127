// Helpers for the runtime suites. Every wait has a deadline: a broken runtime fails, never hangs.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { reservePorts } from '../../test/helpers/ports.ts';
import type { PortRange } from './ledger.ts';

export async function waitFor<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  { timeoutMs = 15_000, intervalMs = 10 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export function tempDataDir(prefix = 'fledge-runtime-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

/** `size` ports reserved for this test process, outside the ephemeral range (test/helpers/ports.ts). */
export function randomPortRange(size = 40): PortRange {
  return reservePorts(size);
}
