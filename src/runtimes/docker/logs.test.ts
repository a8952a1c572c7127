// The log copier against a scripted log stream: Docker stamps stdout and stderr in two copiers,
// so across the streams timestamps come out of order; nothing may be dropped or copied twice,
// also when a copy resumes from its cursor.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { DockerClient } from './client.ts';
import { LogCopier, STDERR, STDOUT } from './logs.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const stamp = (s: number) => `2026-01-02T03:04:${String(s).padStart(2, '0')}.000000001Z`;

function frame(stream: number, second: number, text: string): Buffer {
  const payload = Buffer.from(`${stamp(second)} ${text}`);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

/** A client whose log stream sends these frames (for each call in turn) and ends; records the queries. */
function scripted(calls: Buffer[][]) {
  const queries: Record<string, unknown>[] = [];
  const client = {
    async stream(_method: string, _path: string, options: { query?: Record<string, unknown> } = {}) {
      queries.push(options.query ?? {});
      const res = new PassThrough() as PassThrough & { complete: boolean };
      res.complete = false;
      const frames = calls[queries.length - 1] ?? [];
      setImmediate(() => {
        for (const f of frames) res.write(f);
        res.complete = true;
        res.end();
      });
      return res as unknown as IncomingMessage;
    },
  };
  return { client: client as unknown as DockerClient, queries };
}

describe('LogCopier', () => {
  it('keeps a stderr line stamped before the stdout line that came before it, and resumes without repeats', async () => {
    const sandbox = mkdtempSync(path.join(tmpdir(), 'fledge-logs-'));
    dirs.push(sandbox);
    const first = [frame(STDOUT, 1, 'one\n'), frame(STDOUT, 3, 'three\n'), frame(STDERR, 2, 'two\n')];
    // the resumed stream repeats what was copied (Docker answers from `since`) and brings more
    const again = [...first, frame(STDERR, 4, 'four\n'), frame(STDOUT, 5, 'five\n')];
    const { client, queries } = scripted([first, again]);
    await new LogCopier(client, 'c1', sandbox).run();
    expect(readFileSync(path.join(sandbox, 'stdout'), 'utf8')).toBe('one\nthree\n');
    expect(readFileSync(path.join(sandbox, 'stderr'), 'utf8')).toBe('two\n');

    await new LogCopier(client, 'c1', sandbox).run(false);
    expect(readFileSync(path.join(sandbox, 'stdout'), 'utf8')).toBe('one\nthree\nfive\n');
    expect(readFileSync(path.join(sandbox, 'stderr'), 'utf8')).toBe('two\nfour\n');
    // resumed from a little before the older stream's last line, without following
    expect(queries[1]).toMatchObject({ follow: false });
    expect(String(queries[1]?.since)).toMatch(/^\d+\.\d{9}$/);
  });
});
