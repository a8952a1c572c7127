// Managed mode: Fledge runs HAProxy in master-worker mode (-W -db, master CLI on a unix
// socket), restarts it when it dies, and reloads it seamlessly when the configuration gains a
// backend. Restarts regenerate the configuration first (writeConfig), so HAProxy comes back
// with every service, server and route that was live.
//
// HAProxy outlives Fledge, like tasks do: it runs detached (its own process group, its output
// in <dataDir>/haproxy/haproxy.log, not tied to Fledge's pipes), closing Fledge leaves it
// serving, and the next Fledge ADOPTS the master it finds (pid file, /proc cmdline, the master
// CLI answers) instead of starting another. Only an unresponsive leftover is replaced.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, readSync, rmSync, statSync, truncateSync } from 'node:fs';
import type { Logger } from '../../logger.ts';
import { haproxyCommand, parseShowProc } from './runtime-api.ts';

export interface HaproxyProcessOptions {
  bin: string;
  configPath: string;
  statsSocket: string;
  masterSocket: string;
  pidFile: string;
  /** HAProxy's stdout and stderr (alerts, warnings) */
  logFile: string;
  logger: Logger;
  /** writes the configuration (and maps) from the current state; called before every start */
  writeConfig(): void;
  /** after a restart that followed a crash: HAProxy is up again with the written configuration */
  onRestarted(): void;
  startTimeoutMs?: number;
  /** how often an adopted master (not our child) is checked for liveness; default 500 ms */
  adoptedPollMs?: number;
}

/** How start() got a running HAProxy. */
export type StartOutcome = 'adopted' | 'started';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class HaproxyProcess {
  readonly #o: HaproxyProcessOptions;
  readonly #marker: string;
  /** the master we spawned (undefined for an adopted one) */
  #child: ChildProcess | undefined;
  /** the master pid we supervise, spawned or adopted */
  #pid: number | undefined;
  #adopted = false;
  #stopping = false;
  /** released: Fledge closed; HAProxy keeps running and nothing here touches it any more */
  #released = false;
  #restarts = 0;
  #lastStart = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #readyWaiters: (() => void)[] = [];
  #up = false;

  constructor(options: HaproxyProcessOptions) {
    this.#o = options;
    this.#marker = `\0-f\0${options.configPath}\0`;
  }

  get restarts(): number {
    return this.#restarts;
  }

  /** The master pid, while it runs (ours or adopted). */
  get pid(): number | undefined {
    return this.#up || this.#isOurs(this.#pid) ? this.#pid : undefined;
  }

  /** True when the running master was left by an earlier Fledge and adopted. */
  get adopted(): boolean {
    return this.#adopted;
  }

  /** Validate the written configuration: HAProxy's own message when it is invalid. */
  check(): void {
    const res = spawnSync(this.#o.bin, ['-c', '-q', '-f', this.#o.configPath], { encoding: 'utf8', timeout: 10_000 });
    if (res.error) throw new Error(`cannot run ${this.#o.bin}: ${res.error.message}`);
    if (res.status !== 0)
      throw new Error(`haproxy rejected the configuration: ${`${res.stdout}${res.stderr}`.trim().split('\n').slice(-5).join(' | ')}`);
  }

  /**
   * Adopt a live master of this configuration left by an earlier Fledge (the caller then
   * reconciles it), or start a fresh HAProxy from the written configuration. A leftover that
   * does not answer is killed and replaced.
   */
  async start(): Promise<StartOutcome> {
    this.#stopping = false;
    this.#released = false;
    const leftover = this.#leftoverMaster();
    if (leftover !== undefined) {
      if (await this.#answers(leftover)) {
        this.#adopt(leftover);
        return 'adopted';
      }
      this.#o.logger.warn({ pid: leftover }, 'the haproxy left from an earlier run does not answer on its master socket; replacing it');
    }
    await this.#killStale();
    this.#o.writeConfig();
    this.check();
    await this.#spawnAndWait();
    return 'started';
  }

  /** Resolves once HAProxy answers (immediately when up), or rejects after timeoutMs. */
  async whenReady(timeoutMs: number): Promise<void> {
    if (this.#up) return;
    if (this.#stopping || this.#released) throw new Error('haproxy is stopped');
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#readyWaiters = this.#readyWaiters.filter((w) => w !== done);
        reject(new Error(`haproxy did not come back within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#readyWaiters.push(done);
    });
  }

  /**
   * Seamless reload: validate, then `reload` on the master CLI. The master re-executes itself,
   * starts a new worker that takes the listening sockets from the old one (expose-fd
   * listeners), and the old worker finishes its connections (bounded by hard-stop-after).
   */
  async reload(): Promise<void> {
    this.check();
    const before = parseShowProc(await haproxyCommand(this.#o.masterSocket, 'show proc'));
    await haproxyCommand(this.#o.masterSocket, 'reload').catch(() => undefined);
    const deadline = Date.now() + (this.#o.startTimeoutMs ?? 10_000);
    for (;;) {
      await sleep(20);
      const now = await haproxyCommand(this.#o.masterSocket, 'show proc', 1_000).then(parseShowProc, () => undefined);
      if (now) {
        if (now.failedReloads > before.failedReloads)
          throw new Error('haproxy failed to load the new configuration; the old one stays live');
        const fresh = now.workers.find((pid) => !before.workers.includes(pid));
        if (fresh !== undefined && (await this.#workerAnswers(fresh))) {
          this.#o.logger.info({ worker: fresh, oldWorkers: now.oldWorkers }, 'haproxy reloaded');
          return;
        }
      }
      if (Date.now() > deadline) throw new Error('haproxy reload did not finish in time');
    }
  }

  /** Old workers still finishing connections after a reload. */
  async oldWorkers(): Promise<number[]> {
    const proc = await haproxyCommand(this.#o.masterSocket, 'show proc', 1_000).then(parseShowProc, () => undefined);
    return proc?.oldWorkers ?? [];
  }

  /** All pids (master and workers) of this HAProxy, for tests. */
  async pids(): Promise<number[]> {
    const proc = await haproxyCommand(this.#o.masterSocket, 'show proc', 1_000).then(parseShowProc, () => undefined);
    const master = this.pid;
    return [...new Set([...(master ? [master] : []), ...(proc?.workers ?? []), ...(proc?.oldWorkers ?? [])])];
  }

  /**
   * Fledge stops: forget HAProxy without touching it. It keeps serving with what it has, and
   * the next Fledge adopts it.
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#pollTimer);
    this.#up = false;
    if (this.#pid !== undefined) this.#o.logger.info({ pid: this.#pid }, 'haproxy keeps running without Fledge');
  }

  /** Stop HAProxy (master and workers): for tests and users who want it gone with Fledge. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#up = false;
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#pollTimer);
    const pid = this.#pid;
    if (pid !== undefined && this.#isOurs(pid)) {
      // SIGTERM to the master: hard stop of master and workers.
      signal(pid, 'SIGTERM');
      if (!(await this.#gone([pid], 3_000))) signal(-pid, 'SIGKILL');
      await this.#gone([pid], 2_000);
    }
    await this.#killStale();
    rmSync(this.#o.pidFile, { force: true });
  }

  /** The master named by the pid file, when it is a live HAProxy of this configuration. */
  #leftoverMaster(): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(this.#o.pidFile, 'utf8').trim().split('\n')[0]);
    } catch {
      return undefined;
    }
    return Number.isInteger(pid) && pid > 0 && this.#isOurs(pid) ? pid : undefined;
  }

  /** A live (not zombie) process whose command line is an haproxy of this configuration. */
  #isOurs(pid: number | undefined): boolean {
    if (pid === undefined) return false;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return cmdline.includes('haproxy') && `\0${cmdline}`.includes(this.#marker);
    } catch {
      return false;
    }
  }

  /**
   * The master CLI answers as this master, and a current worker answers on the stats socket.
   * Asked three times with longer timeouts: a slow answer on a loaded machine must not get a
   * healthy HAProxy (and every connection through it) killed and replaced.
   */
  async #answers(pid: number): Promise<boolean> {
    for (const timeoutMs of [1_000, 2_000, 4_000]) {
      const proc = await haproxyCommand(this.#o.masterSocket, 'show proc', timeoutMs).then(parseShowProc, () => undefined);
      if (proc && proc.master !== pid) return false;
      const worker = proc?.workers[0];
      if (worker !== undefined && (await this.#workerAnswers(worker, timeoutMs))) return true;
      if (!this.#isOurs(pid)) return false;
      await sleep(100);
    }
    return false;
  }

  #adopt(pid: number): void {
    this.#child = undefined;
    this.#pid = pid;
    this.#adopted = true;
    this.#lastStart = Date.now();
    this.#markUp();
    this.#o.logger.info({ pid, config: this.#o.configPath }, 'adopted the haproxy left running by an earlier Fledge');
    this.#watchAdopted(pid);
  }

  /** Not our child: no exit event. Poll its pid; gone (or a zombie) counts as an exit. */
  #watchAdopted(pid: number): void {
    this.#pollTimer = setTimeout(() => {
      if (this.#released || this.#stopping || this.#pid !== pid) return;
      if (this.#isOurs(pid)) this.#watchAdopted(pid);
      else this.#onExit(pid, null, null);
    }, this.#o.adoptedPollMs ?? 500);
    this.#pollTimer.unref();
  }

  #markUp(): void {
    this.#up = true;
    for (const w of this.#readyWaiters.splice(0)) w();
  }

  async #spawnAndWait(): Promise<void> {
    rmSync(this.#o.masterSocket, { force: true });
    rmSync(this.#o.pidFile, { force: true });
    // Detached, in its own process group, its output in a file: Fledge may die (even SIGKILL)
    // without HAProxy noticing.
    if (existsSync(this.#o.logFile) && statSync(this.#o.logFile).size > 4 * 1024 * 1024) truncateSync(this.#o.logFile, 0);
    const logStart = existsSync(this.#o.logFile) ? statSync(this.#o.logFile).size : 0;
    const fd = openSync(this.#o.logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(this.#o.bin, ['-W', '-db', '-f', this.#o.configPath, '-p', this.#o.pidFile, '-S', `${this.#o.masterSocket},mode,600`], {
        stdio: ['ignore', fd, fd],
        detached: true,
      });
    } finally {
      closeSync(fd);
    }
    child.unref();
    this.#child = child;
    this.#pid = child.pid;
    this.#adopted = false;
    this.#lastStart = Date.now();
    const tail = () => this.#logTail(logStart);
    let spawnError: Error | undefined;
    child.on('error', (err) => {
      spawnError = err;
    });
    child.on('exit', (code, sig) => {
      if (child === this.#child) this.#onExit(child.pid, code, sig);
    });

    const deadline = Date.now() + (this.#o.startTimeoutMs ?? 10_000);
    for (;;) {
      if (spawnError) throw new Error(`cannot start haproxy (${this.#o.bin}): ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`haproxy exited at start (${child.exitCode ?? child.signalCode}): ${tail()}`);
      }
      const proc = await haproxyCommand(this.#o.masterSocket, 'show proc', 500).then(parseShowProc, () => undefined);
      const worker = proc?.workers[0];
      if (worker !== undefined && (await this.#workerAnswers(worker))) break;
      if (Date.now() > deadline) {
        if (child.pid !== undefined) signal(-child.pid, 'SIGKILL');
        throw new Error(`haproxy did not start within ${this.#o.startTimeoutMs ?? 10_000} ms: ${tail()}`);
      }
      await sleep(20);
    }
    this.#markUp();
    const warnings = tail();
    if (warnings) this.#o.logger.warn({ haproxy: warnings }, 'haproxy');
    this.#o.logger.info({ pid: child.pid, config: this.#o.configPath, log: this.#o.logFile }, 'haproxy started');
  }

  /** The last lines HAProxy wrote since `from` (its log file), for error messages. */
  #logTail(from: number): string {
    try {
      const size = statSync(this.#o.logFile).size;
      const start = Math.max(from, size - 4096);
      if (size <= start) return '';
      const buf = Buffer.alloc(size - start);
      const fd = openSync(this.#o.logFile, 'r');
      try {
        readSync(fd, buf, 0, buf.length, start);
      } finally {
        closeSync(fd);
      }
      return buf
        .toString('utf8')
        .split('\n')
        .filter((l) => l.trim())
        .slice(-5)
        .join(' | ');
    } catch {
      return '';
    }
  }

  /** The stats socket is served by this worker. */
  async #workerAnswers(pid: number, timeoutMs = 1_000): Promise<boolean> {
    const info = await haproxyCommand(this.#o.statsSocket, 'show info', timeoutMs).catch(() => '');
    return new RegExp(`^Pid: ${pid}$`, 'm').test(info);
  }

  #onExit(pid: number | undefined, code: number | null, sig: NodeJS.Signals | null): void {
    if (pid !== this.#pid) return;
    this.#up = false;
    if (this.#stopping || this.#released) return;
    this.#o.logger.error(
      { pid, code, signal: sig, adopted: this.#adopted, log: this.#logTail(0) },
      'haproxy exited; restarting it with the last configuration',
    );
    const delay = Date.now() - this.#lastStart > 30_000 ? 0 : Math.min(5_000, 100 * 2 ** Math.min(this.#restarts, 6));
    this.#restartTimer = setTimeout(() => void this.#restart(), delay);
  }

  async #restart(): Promise<void> {
    if (this.#stopping || this.#released) return;
    this.#restarts += 1;
    try {
      // A master gone without its workers must not leave one holding the port and sockets.
      await this.#killStale();
      this.#o.writeConfig();
      await this.#spawnAndWait();
      if (this.#stopping || this.#released) return;
      this.#o.logger.warn({ restarts: this.#restarts }, 'haproxy restarted; every service and server restored');
      this.#o.onRestarted();
    } catch (err) {
      this.#o.logger.error({ err }, 'haproxy restart failed; retrying');
      if (!this.#stopping && !this.#released) this.#restartTimer = setTimeout(() => void this.#restart(), 1_000);
    }
  }

  /**
   * HAProxy processes of this configuration still running that are not the live master we
   * supervise: an unresponsive master from an earlier run, or workers of a master that died.
   * They would hold the port with stale state. SIGKILL, then wait until they are gone.
   */
  async #killStale(): Promise<void> {
    rmSync(this.#o.pidFile, { force: true });
    let entries: string[] = [];
    try {
      entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
    } catch {
      return;
    }
    const killed: number[] = [];
    for (const entry of entries) {
      const pid = Number(entry);
      if (pid === this.#pid && this.#up) continue;
      if (!this.#isOurs(pid)) continue;
      this.#o.logger.warn({ pid }, 'stopping an haproxy process of this configuration left from before');
      signal(pid, 'SIGKILL');
      killed.push(pid);
    }
    if (killed.length > 0) await this.#gone(killed, 3_000);
  }

  /** Wait until none of the pids is a live haproxy of this configuration. */
  async #gone(pids: number[], timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (pids.every((p) => !this.#isOurs(p))) return true;
      if (Date.now() > deadline) return false;
      await sleep(10);
    }
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}
