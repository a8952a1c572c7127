// Managed mode: Fledge runs HAProxy in master-worker mode (-W -db, master CLI on a unix
// socket), restarts it when it dies, and reloads it seamlessly when the configuration gains a
// backend. Restarts regenerate the configuration first (writeConfig), so HAProxy comes back
// with every service, server and route that was live.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import type { Logger } from '../../logger.ts';
import { haproxyCommand, parseShowProc } from './runtime-api.ts';

export interface HaproxyProcessOptions {
  bin: string;
  configPath: string;
  statsSocket: string;
  masterSocket: string;
  pidFile: string;
  logger: Logger;
  /** writes the configuration (and maps) from the current state; called before every start */
  writeConfig(): void;
  /** after a restart that followed a crash: HAProxy is up again with the written configuration */
  onRestarted(): void;
  startTimeoutMs?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class HaproxyProcess {
  readonly #o: HaproxyProcessOptions;
  #child: ChildProcess | undefined;
  #stopping = false;
  #ready: Promise<void> | undefined;
  #restarts = 0;
  #lastStart = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #readyWaiters: (() => void)[] = [];
  #up = false;

  constructor(options: HaproxyProcessOptions) {
    this.#o = options;
  }

  get restarts(): number {
    return this.#restarts;
  }

  /** The master pid, while it runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Validate the written configuration: HAProxy's own message when it is invalid. */
  check(): void {
    const res = spawnSync(this.#o.bin, ['-c', '-q', '-f', this.#o.configPath], { encoding: 'utf8', timeout: 10_000 });
    if (res.error) throw new Error(`cannot run ${this.#o.bin}: ${res.error.message}`);
    if (res.status !== 0) throw new Error(`haproxy rejected the configuration: ${`${res.stdout}${res.stderr}`.trim().split('\n').slice(-5).join(' | ')}`);
  }

  async start(): Promise<void> {
    this.#killStale();
    this.#o.writeConfig();
    this.check();
    this.#ready = this.#spawnAndWait();
    await this.#ready;
  }

  /** Resolves once HAProxy answers (immediately when up), or rejects after timeoutMs. */
  async whenReady(timeoutMs: number): Promise<void> {
    if (this.#up) return;
    if (this.#stopping) throw new Error('haproxy is stopped');
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
        if (now.failedReloads > before.failedReloads) throw new Error('haproxy failed to load the new configuration; the old one stays live');
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
    return [...new Set([...(this.pid ? [this.pid] : []), ...(proc?.workers ?? []), ...(proc?.oldWorkers ?? [])])];
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#up = false;
    clearTimeout(this.#restartTimer);
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // SIGTERM to the master: hard stop of master and workers.
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
    rmSync(this.#o.pidFile, { force: true });
  }

  async #spawnAndWait(): Promise<void> {
    rmSync(this.#o.masterSocket, { force: true });
    const child = spawn(this.#o.bin, ['-W', '-db', '-f', this.#o.configPath, '-p', this.#o.pidFile, '-S', `${this.#o.masterSocket},mode,600`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    this.#lastStart = Date.now();
    const tail: string[] = [];
    const onOutput = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        if (/\[(ALERT|WARNING)\]/.test(line)) this.#o.logger.warn({ haproxy: line }, 'haproxy');
        else this.#o.logger.debug({ haproxy: line }, 'haproxy');
      }
    };
    child.stdout?.on('data', onOutput);
    child.stderr?.on('data', onOutput);
    let spawnError: Error | undefined;
    child.on('error', (err) => {
      spawnError = err;
    });
    child.on('exit', (code, signal) => this.#onExit(child, code, signal));

    const deadline = Date.now() + (this.#o.startTimeoutMs ?? 10_000);
    for (;;) {
      if (spawnError) throw new Error(`cannot start haproxy (${this.#o.bin}): ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`haproxy exited at start (${child.exitCode ?? child.signalCode}): ${tail.slice(-5).join(' | ')}`);
      }
      const proc = await haproxyCommand(this.#o.masterSocket, 'show proc', 500).then(parseShowProc, () => undefined);
      const worker = proc?.workers[0];
      if (worker !== undefined && (await this.#workerAnswers(worker))) break;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`haproxy did not start within ${this.#o.startTimeoutMs ?? 10_000} ms: ${tail.slice(-5).join(' | ')}`);
      }
      await sleep(20);
    }
    this.#up = true;
    for (const w of this.#readyWaiters.splice(0)) w();
    this.#o.logger.info({ pid: child.pid, config: this.#o.configPath }, 'haproxy started');
  }

  /** The stats socket is served by this worker. */
  async #workerAnswers(pid: number): Promise<boolean> {
    const info = await haproxyCommand(this.#o.statsSocket, 'show info', 1_000).catch(() => '');
    return new RegExp(`^Pid: ${pid}$`, 'm').test(info);
  }

  #onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.#child) return;
    this.#up = false;
    if (this.#stopping) return;
    // A master gone without its workers must not leave one holding the port and sockets.
    this.#o.logger.error({ code, signal }, 'haproxy exited; restarting it with the last configuration');
    const delay = Date.now() - this.#lastStart > 30_000 ? 0 : Math.min(5_000, 100 * 2 ** Math.min(this.#restarts, 6));
    this.#restartTimer = setTimeout(() => void this.#restart(), delay);
  }

  async #restart(): Promise<void> {
    if (this.#stopping) return;
    this.#restarts += 1;
    try {
      this.#killStale();
      this.#o.writeConfig();
      await this.#spawnAndWait();
      this.#o.logger.warn({ restarts: this.#restarts }, 'haproxy restarted; every service and server restored');
      this.#o.onRestarted();
    } catch (err) {
      this.#o.logger.error({ err }, 'haproxy restart failed; retrying');
      if (!this.#stopping) this.#restartTimer = setTimeout(() => void this.#restart(), 1_000);
    }
  }

  /**
   * HAProxy processes of this configuration left running: a master from an earlier run (pid
   * file), or workers of a master that died. They would hold the port with stale state.
   */
  #killStale(): void {
    rmSync(this.#o.pidFile, { force: true });
    const marker = `\0-f\0${this.#o.configPath}\0`;
    let entries: string[] = [];
    try {
      entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
    } catch {
      return;
    }
    for (const entry of entries) {
      const pid = Number(entry);
      if (pid === this.#child?.pid && this.#child.exitCode === null && this.#child.signalCode === null) continue;
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        continue;
      }
      if (!cmdline.includes('haproxy') || !`\0${cmdline}`.includes(marker)) continue;
      this.#o.logger.warn({ pid }, 'stopping an haproxy process of this configuration left from before');
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}
