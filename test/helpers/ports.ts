// Ports for tests, reserved machine-wide so that no two test files (nor two checkouts running
// their suites at once) ever share one, and taken from outside the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), where any outgoing connection could grab a port
// between the moment a test picks it and the moment a server binds it.
//
// A reservation is a file per block of ports in a shared directory, created exclusively and
// holding the owner's pid and process start time; a block whose owner is gone is taken over.
// Blocks are released when the process exits.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface PortRange {
  from: number;
  to: number;
}

const BLOCK = 50;
const LOWEST = 10_000;
const DIR = path.join(tmpdir(), 'fledge-test-ports');
/** Ports Fledge uses by default (API, LB, task range): a developer's own Fledge may hold them. */
const AVOID: PortRange[] = [
  { from: 7000, to: 7999 },
  { from: 31_000, to: 31_999 },
];

const owned: string[] = [];
let exitHookInstalled = false;

/** The kernel's ephemeral range, inclusive. */
export function ephemeralRange(file = '/proc/sys/net/ipv4/ip_local_port_range'): PortRange {
  try {
    const [from, to] = readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    if (from && to && from <= to) return { from, to };
  } catch {
    // not Linux: fall back to the IANA range, which most other systems use
  }
  return { from: 49_152, to: 65_535 };
}

function overlaps(a: PortRange, b: PortRange): boolean {
  return a.from <= b.to && b.from <= a.to;
}

/** Block starts usable for tests on this machine. */
export function candidateBlocks(ephemeral = ephemeralRange()): number[] {
  const starts: number[] = [];
  for (let from = LOWEST; from + BLOCK - 1 <= 65_535; from += BLOCK) {
    const block = { from, to: from + BLOCK - 1 };
    if (overlaps(block, ephemeral) || AVOID.some((a) => overlaps(block, a))) continue;
    starts.push(from);
  }
  return starts;
}

function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function ownerAlive(content: string): boolean {
  const [pidText, start] = content.trim().split(':');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // a reused pid is another process: the block is free
  return start === undefined || start === '' || startTimeOf(pid) === start;
}

function ageMs(file: string): number {
  try {
    return Date.now() - statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function tryClaim(start: number): boolean {
  const file = path.join(DIR, String(start));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      writeSync(fd, `${process.pid}:${startTimeOf(process.pid) ?? ''}`);
      closeSync(fd);
      owned.push(file);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let content = '';
      try {
        content = readFileSync(file, 'utf8');
      } catch {
        continue; // released meanwhile: try again
      }
      // an empty file is a claim being written right now (or one whose writer died at once)
      if (content === '' ? ageMs(file) < 10_000 : ownerAlive(content)) return false;
      rmSync(file, { force: true });
    }
  }
  return false;
}

function release(file: string): void {
  rmSync(file, { force: true });
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const file of owned) release(file);
  });
}

/**
 * Reserve `count` consecutive ports for the rest of this process's life. Synchronous, so a test
 * file can reserve its task port range at module level.
 */
export function reservePorts(count: number, options: { busy?: ReadonlySet<number> } = {}): PortRange {
  if (!Number.isInteger(count) || count < 1 || count > 20 * BLOCK) throw new Error(`reservePorts: bad count ${count}`);
  mkdirSync(DIR, { recursive: true, mode: 0o1777 });
  installExitHook();
  const blocks = Math.ceil(count / BLOCK);
  const starts = candidateBlocks();
  // random order, so concurrent claimers rarely race for the same blocks
  const order = starts
    .map((s) => [Math.random(), s] as const)
    .sort((a, b) => a[0] - b[0])
    .map(([, s]) => s);
  const busy = options.busy ?? listeningPorts();
  for (const first of order) {
    const run = Array.from({ length: blocks }, (_, i) => first + i * BLOCK);
    if (!run.every((s) => starts.includes(s))) continue;
    // A block released by an ended test process may still have a listener of a process it left
    // behind (a task, a proxy, on its way out): skip it rather than hand out a taken port.
    if (busy.size > 0 && run.some((s) => Array.from({ length: BLOCK }, (_, i) => s + i).some((p) => busy.has(p)))) continue;
    const got: number[] = [];
    for (const s of run) {
      if (!tryClaim(s)) break;
      got.push(s);
    }
    if (got.length === blocks) return { from: first, to: first + count - 1 };
    for (const s of got) {
      const file = path.join(DIR, String(s));
      release(file);
      owned.splice(owned.indexOf(file), 1);
    }
  }
  throw new Error(`reservePorts: no ${count} free test ports outside the ephemeral range (${DIR} holds the reservations)`);
}

/** Local TCP ports something listens on now, from /proc/net/tcp{,6} (empty where unreadable). */
export function listeningPorts(files = ['/proc/net/tcp', '/proc/net/tcp6']): Set<number> {
  const ports = new Set<number>();
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      // state 0A is LISTEN; local is ADDR:PORT in hex
      if (state !== '0A' || !local) continue;
      const port = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
      if (Number.isInteger(port)) ports.add(port);
    }
  }
  return ports;
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

let pool: { next: number; to: number } | undefined;

/** One reserved port that nothing listens on right now (checked by binding it). */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    if (!pool || pool.next > pool.to) {
      const range = reservePorts(BLOCK);
      pool = { next: range.from, to: range.to };
    }
    const port = pool.next++;
    if (await bindable(port)) return port;
  }
  throw new Error('freePort: no bindable reserved port');
}
