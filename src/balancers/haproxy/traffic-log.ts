/*
 * HAProxy's per-request log lines, read live from its ring buffer: the HAProxy half of the
 * traffic counters (traffic.ts). The frontend logs one line per request into the ring
 * `fledge_traffic` (config.ts TRAFFIC_LOG_FORMAT: worker pid, request counter, backend,
 * server, status, total active time, termination state); `show events fledge_traffic -w` on
 * the stats socket streams the ring and waits for more.
 *
 * Each line counts once:
 * - The first connection starts at the ring's end (`-n`): what HAProxy served before Fledge
 *   started is not Fledge's to count.
 * - A reconnection to the same worker (the connection closed, e.g. by `stats timeout`) reads
 *   the ring from its start and skips lines whose request counter (%rt, per worker) it has
 *   seen — the counters seen, not the highest: lines arrive out of counter order (SeenCounters).
 * - A new worker (a reload, a restart) is read from the start of its ring: everything in it
 *   happened after it started, so after the previous worker's lines. The balancer calls
 *   reconnect() after every reload it makes; a connection to a worker that ended closes.
 *
 * Limits (said in docs/operations.md): an old worker's last lines after a reload are not read
 * (at most its in-flight requests), and a reader more than the ring's size behind loses the
 * oldest lines, which then count nowhere.
 */
import net from 'node:net';
import type { Logger } from '../../logger.ts';
import type { TrafficRecord } from '../traffic.ts';
import { TRAFFIC_RING } from './config.ts';
import { haproxyCommand } from './runtime-api.ts';

export interface TrafficLogOptions {
  socketPath: string;
  /** the service and upstream a backend/server pair stands for, if Fledge knows it */
  resolve(backend: string, server: string): { serviceId: string; taskId: string; deployId?: string } | undefined;
  onRecord(record: TrafficRecord): void;
  logger: Logger;
  /** pause before reconnecting; default 500 ms */
  retryMs?: number;
  commandTimeoutMs?: number;
}

/** One parsed line, or undefined for anything else (HAProxy's own messages, a truncated line). */
export function parseTrafficLine(
  line: string,
): { pid: number; counter: number; backend: string; server: string; status: number; totalMs: number; termination: string } | undefined {
  const f = line.trim().split(' ');
  if (f.length < 8 || f[0] !== 'F') return undefined;
  const [pid, counter, status, totalMs] = [Number(f[1]), Number(f[2]), Number(f[5]), Number(f[6])];
  if (!Number.isInteger(pid) || !Number.isFinite(counter) || !Number.isInteger(status) || !Number.isFinite(totalMs)) return undefined;
  return { pid, counter, backend: f[3]!, server: f[4]!, status, totalMs, termination: f[7]! };
}

/** HAProxy's termination state: S… (server aborted, refused, errored) and s… (server timeout) are the upstream's failures. */
export function isUpstreamFailure(termination: string): boolean {
  return termination.startsWith('S') || termination.startsWith('s');
}

export class HaproxyTrafficLog {
  readonly #o: TrafficLogOptions;
  #socket: net.Socket | undefined;
  #closed = false;
  #retry: NodeJS.Timeout | undefined;
  /** the worker read last, and the request counters seen per worker */
  #pid: number | undefined;
  readonly #seen = new Map<number, SeenCounters>();
  #connectedOnce = false;
  #buffer = '';

  constructor(options: TrafficLogOptions) {
    this.#o = options;
  }

  /**
   * `fresh`: the worker was just started by Fledge, so everything in its ring is Fledge's to
   * count — read from its start, or requests served before the first connection would be lost.
   */
  start(options: { fresh?: boolean } = {}): void {
    if (options.fresh) this.#connectedOnce = true;
    void this.#connect();
  }

  /** Drop the connection and read the worker running now (after a reload). */
  reconnect(): void {
    if (this.#closed) return;
    const socket = this.#socket;
    this.#socket = undefined;
    socket?.destroy();
    clearTimeout(this.#retry);
    void this.#connect();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  async #connect(): Promise<void> {
    if (this.#closed || this.#socket) return;
    let pid: number | undefined;
    try {
      const info = await haproxyCommand(this.#o.socketPath, 'show info', this.#o.commandTimeoutMs ?? 5_000);
      pid = Number(/^Pid:\s*(\d+)/m.exec(info)?.[1]) || undefined;
    } catch {
      this.#scheduleRetry();
      return;
    }
    if (this.#closed || this.#socket) return;
    // From the ring's end only at the very first look at a worker Fledge did not see start.
    const fromEnd = !this.#connectedOnce || (pid !== undefined && pid === this.#pid && !this.#seen.has(pid));
    this.#connectedOnce = true;
    if (pid !== undefined) this.#pid = pid;
    // Read from its start: every line of this worker is Fledge's from now on, so a reconnection
    // before any traffic reads from the start too (deduplicated), never from the end.
    if (!fromEnd && pid !== undefined && !this.#seen.has(pid)) this.#seen.set(pid, new SeenCounters());
    const socket = net.createConnection(this.#o.socketPath);
    this.#socket = socket;
    this.#buffer = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`show events ${TRAFFIC_RING} -w${fromEnd ? ' -n' : ''}\n`));
    socket.on('data', (chunk: string) => this.#data(chunk));
    socket.on('error', (err) => this.#o.logger.debug({ err: err.message }, 'haproxy traffic log connection failed'));
    socket.on('close', () => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#scheduleRetry();
    });
  }

  #scheduleRetry(): void {
    if (this.#closed) return;
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => void this.#connect(), this.#o.retryMs ?? 500);
    this.#retry.unref();
  }

  #data(chunk: string): void {
    this.#buffer += chunk;
    let nl = this.#buffer.indexOf('\n');
    while (nl !== -1) {
      this.#line(this.#buffer.slice(0, nl));
      this.#buffer = this.#buffer.slice(nl + 1);
      nl = this.#buffer.indexOf('\n');
    }
    // A line is at most the ring's maxlen: anything longer is not ours.
    if (this.#buffer.length > 4096) this.#buffer = '';
  }

  #line(text: string): void {
    const line = parseTrafficLine(text);
    if (!line || line.status < 100) return;
    let seen = this.#seen.get(line.pid);
    if (!seen) {
      seen = new SeenCounters();
      this.#seen.set(line.pid, seen);
      if (this.#seen.size > 64) this.#seen.delete(this.#seen.keys().next().value as number);
    }
    if (!seen.add(line.counter)) return;
    const target = this.#o.resolve(line.backend, line.server);
    if (!target) return;
    this.#o.onRecord({
      serviceId: target.serviceId,
      taskId: target.taskId,
      ...(target.deployId !== undefined ? { deployId: target.deployId } : {}),
      status: line.status,
      latencyMs: Math.max(0, line.totalMs),
      upstreamError: isUpstreamFailure(line.termination),
    });
  }
}

/**
 * The request counters (%rt) of one worker's lines already counted. Lines do not arrive in
 * counter order — %rt is taken when a request starts, the line is written when it ends, by
 * whichever thread served it — so "at most the highest seen" would drop every request that
 * finished after a later one (slower tasks more often: a bias, not only a loss). A line is a
 * repeat only if its counter was seen, or is far below the highest (the ring holds far fewer
 * lines than KEEP, so a reconnection never re-reads anything older).
 */
export class SeenCounters {
  static readonly KEEP = 40_000;
  #floor = -1;
  #max = -1;
  readonly #set = new Set<number>();

  /** false for a counter already counted */
  add(counter: number): boolean {
    if (counter <= this.#floor || this.#set.has(counter)) return false;
    this.#set.add(counter);
    if (counter > this.#max) this.#max = counter;
    if (this.#set.size > SeenCounters.KEEP * 1.5) {
      this.#floor = this.#max - SeenCounters.KEEP;
      for (const c of this.#set) if (c <= this.#floor) this.#set.delete(c);
    }
    return true;
  }
}
