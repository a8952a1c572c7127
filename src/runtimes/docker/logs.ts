// A container's stdout and stderr, copied into its sandbox as they come, so they are read by
// byte offset like a process task's (the LogChunk contract), survive the container's removal
// and are readable while its Docker host is down.
//
// The copier follows GET /containers/{id}/logs?follow=1&timestamps=1 (a multiplexed stream:
// 8-byte frame headers, each frame one log message prefixed with its RFC 3339 nano timestamp).
// After appending, it writes a cursor: per stream, the last timestamp copied and how many
// messages with that very timestamp were copied, and the sizes of both files. Per stream,
// because Docker stamps stdout and stderr in two copiers and writes them in the order they
// arrive, so across the two streams timestamps are not in order (a stderr line stamped before
// the stdout line that precedes it): one shared "last timestamp" dropped such lines. Resuming
// (after a scheduler restart or a broken connection) truncates the files back to the cursor's
// sizes, asks for messages since a little before the older stream's timestamp and skips, per
// stream, those already counted: nothing is lost or copied twice.
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import type { DockerClient } from './client.ts';

export const STDOUT = 1;
export const STDERR = 2;

export interface Frame {
  stream: number;
  payload: Buffer;
}

/** Splits Docker's multiplexed stream (no TTY) into frames. */
export class FrameParser {
  #pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const frames: Frame[] = [];
    while (this.#pending.length >= 8) {
      const size = this.#pending.readUInt32BE(4);
      if (this.#pending.length < 8 + size) break;
      frames.push({ stream: this.#pending[0] as number, payload: this.#pending.subarray(8, 8 + size) });
      this.#pending = this.#pending.subarray(8 + size);
    }
    return frames;
  }
}

/** `2026-01-02T03:04:05.123456789Z message` → nanoseconds since the epoch, and the message. */
export function splitTimestamp(payload: Buffer): { ns: bigint; data: Buffer } | undefined {
  const space = payload.indexOf(0x20);
  if (space < 0 || space > 40) return undefined;
  const ns = parseTimestampNs(payload.toString('latin1', 0, space));
  return ns === undefined ? undefined : { ns, data: payload.subarray(space + 1) };
}

export function parseTimestampNs(text: string): bigint | undefined {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (!Number.isFinite(ms)) return undefined;
  return BigInt(ms / 1000) * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/** Docker's `since` query value for a nanosecond timestamp: `seconds.nanoseconds`. */
export function sinceParam(ns: bigint): string {
  const s = ns / 1_000_000_000n;
  return `${s}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
}

interface Cursor {
  /** nanoseconds of the last stdout message copied, as a decimal string */
  ns: string;
  /** stdout messages with exactly that timestamp already copied */
  atNs: number;
  /** the same for stderr (absent in cursors written before: `ns`/`atNs` then stand for both) */
  errNs?: string;
  errAtNs?: number;
  stdout: number;
  stderr: number;
}

/** How far before the older stream's last timestamp a resumed copy asks from. */
const RESUME_MARGIN_NS = 1_000_000_000n;

interface StreamPosition {
  lastNs: bigint;
  atNs: number;
  /** messages at lastNs still to skip: copied before the resumption */
  skip: number;
}

const CURSOR_FILE = 'logs.cursor.json';
/** cursor writes are batched: a chatty task must not cost a rename per line */
const CURSOR_EVERY_MS = 200;

function readCursor(sandbox: string): Cursor | undefined {
  try {
    const c = JSON.parse(readFileSync(path.join(sandbox, CURSOR_FILE), 'utf8')) as Partial<Cursor>;
    if (typeof c.ns !== 'string' || !/^\d+$/.test(c.ns)) return undefined;
    const errNs = typeof c.errNs === 'string' && /^\d+$/.test(c.errNs) ? c.errNs : c.ns;
    return {
      ns: c.ns,
      atNs: Number(c.atNs) || 0,
      errNs,
      errAtNs: Number(c.errNs === undefined ? c.atNs : c.errAtNs) || 0,
      stdout: Number(c.stdout) || 0,
      stderr: Number(c.stderr) || 0,
    };
  } catch {
    return undefined;
  }
}

/**
 * Copies one container's output into `<sandbox>/stdout` and `<sandbox>/stderr` until the
 * container stops (the stream ends) or stop() is called. One copier per container at a time.
 */
export class LogCopier {
  readonly #client: DockerClient;
  readonly #containerId: string;
  readonly #sandbox: string;
  #res: IncomingMessage | undefined;
  #stopped = false;

  constructor(client: DockerClient, containerId: string, sandbox: string) {
    this.#client = client;
    this.#containerId = containerId;
    this.#sandbox = sandbox;
  }

  /**
   * Copy until the container's output ends (resolves) or the connection fails (rejects). With
   * `follow: false`, copy what Docker has now past the cursor and end.
   */
  async run(follow = true): Promise<void> {
    const cursor = readCursor(this.#sandbox) ?? { ns: '0', atNs: 0, stdout: 0, stderr: 0 };
    const files = { out: path.join(this.#sandbox, 'stdout'), err: path.join(this.#sandbox, 'stderr') };
    const out = openSync(files.out, existsSync(files.out) ? 'r+' : 'w+');
    const err = openSync(files.err, existsSync(files.err) ? 'r+' : 'w+');
    try {
      // Bytes past the cursor belong to messages the stream will send again.
      ftruncateSync(out, cursor.stdout);
      ftruncateSync(err, cursor.stderr);
      let size = { stdout: cursor.stdout, stderr: cursor.stderr };
      const at = (ns: string | undefined, n: number | undefined): StreamPosition => ({
        lastNs: BigInt(ns ?? '0'),
        atNs: n ?? 0,
        skip: n ?? 0,
      });
      const pos = { out: at(cursor.ns, cursor.atNs), err: at(cursor.errNs ?? cursor.ns, cursor.errAtNs ?? cursor.atNs) };
      const seen = [pos.out.lastNs, pos.err.lastNs].filter((ns) => ns > 0n);
      const oldest = seen.length > 0 ? seen.reduce((a, b) => (a < b ? a : b)) : 0n;
      const since = oldest > RESUME_MARGIN_NS ? oldest - RESUME_MARGIN_NS : 0n;
      let dirty = false;
      let lastWrite = 0;
      const save = () => {
        if (!dirty) return;
        const next: Cursor = {
          ns: String(pos.out.lastNs),
          atNs: pos.out.atNs,
          errNs: String(pos.err.lastNs),
          errAtNs: pos.err.atNs,
          stdout: size.stdout,
          stderr: size.stderr,
        };
        const file = path.join(this.#sandbox, CURSOR_FILE);
        writeFileSync(`${file}.tmp`, JSON.stringify(next));
        renameSync(`${file}.tmp`, file);
        dirty = false;
        lastWrite = Date.now();
      };
      if (this.#stopped) return;
      const res = await this.#client.stream('GET', `/containers/${encodeURIComponent(this.#containerId)}/logs`, {
        query: { follow, stdout: true, stderr: true, timestamps: true, ...(since > 0n ? { since: sinceParam(since) } : {}) },
      });
      this.#res = res;
      if (this.#stopped) res.destroy();
      const parser = new FrameParser();
      await new Promise<void>((resolve, reject) => {
        res.on('data', (chunk: Buffer) => {
          for (const frame of parser.push(chunk)) {
            if (frame.stream !== STDOUT && frame.stream !== STDERR) continue;
            const split = splitTimestamp(frame.payload);
            if (!split) continue;
            // Each stream's timestamps are in order; the two streams' are not, with each other.
            const p = frame.stream === STDOUT ? pos.out : pos.err;
            if (split.ns < p.lastNs) continue;
            if (split.ns === p.lastNs && p.skip > 0) {
              p.skip--;
              continue;
            }
            p.skip = 0;
            if (split.ns === p.lastNs) p.atNs++;
            else {
              p.lastNs = split.ns;
              p.atNs = 1;
            }
            if (frame.stream === STDOUT)
              size = { ...size, stdout: size.stdout + writeSync(out, split.data, 0, split.data.length, size.stdout) };
            else size = { ...size, stderr: size.stderr + writeSync(err, split.data, 0, split.data.length, size.stderr) };
            dirty = true;
          }
          if (Date.now() - lastWrite >= CURSOR_EVERY_MS) save();
        });
        res.on('end', () => {
          save();
          resolve();
        });
        res.on('error', (e) => {
          save();
          reject(e);
        });
        res.on('close', () => {
          save();
          if (this.#stopped) resolve();
          else if (!res.complete) reject(new Error('the log stream closed early'));
        });
      });
    } finally {
      this.#res = undefined;
      closeSync(out);
      closeSync(err);
    }
  }

  /** Stop copying (the cursor is saved; a later copier resumes from it). */
  stop(): void {
    this.#stopped = true;
    this.#res?.destroy();
  }
}
