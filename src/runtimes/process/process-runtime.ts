/*
 * The `process` runtime: tasks are plain processes on this machine that outlive the scheduler.
 *
 * Design:
 * - Each task runs under a tiny /bin/sh wrapper (sandbox.ts WRAPPER), spawned detached so it
 *   leads its own process group, with stdout/stderr going straight to files in the sandbox.
 *   The wrapper runs the task in the foreground and, when it ends, writes its status to
 *   `<sandbox>/exit` (temp file + rename). That record is how an exit is learned when nobody
 *   was watching: scheduler down, or a re-adopted task that is not our child.
 * - task.json records the wrapper's pid and /proc start time before start() returns. A pid
 *   counts as the task only while its start time matches, so a reused pid is never adopted.
 * - stop() signals the whole group: the task gets SIGTERM directly, the wrapper defers it
 *   (trapped) until the task is gone and then records the exit. After graceMs the group gets
 *   SIGKILL; a wrapper killed with it cannot record, so stop() records SIGKILL itself. A stop
 *   right after start first waits (bounded) until the task has been exec'd, or the wrapper
 *   would swallow the SIGTERM meant for it.
 * - Exits are detected by the wrapper's 'exit' event for our own children, and for re-adopted
 *   tasks by a watch on the sandbox plus a cheap liveness poll (kill-free /proc read).
 * - A wrapper that vanishes without a record (killed from outside) is recorded as UNKNOWN, or
 *   as the signal Node saw when it was our child; whatever the task left running is killed.
 * - "The task's processes" are its whole tree, not only its process group: the members of its
 *   cgroup (when the machine allows one) and every process carrying its FLEDGE_TASK_ID mark
 *   (tree.ts), so a child that called setsid is stopped with it, also after a restart.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  watch,
  type FSWatcher,
} from 'node:fs';
import { availableParallelism, hostname, totalmem } from 'node:os';
import path from 'node:path';
import type { Logger } from '../../logger.ts';
import { ResourceLedger, type Capacity, type HostUsage, type PortRange } from '../ledger.ts';
import { readLogChunk } from '../log-file.ts';

export { completeUtf8Length } from '../log-file.ts';
import {
  ForeignTaskError,
  type LogChunk,
  type Runtime,
  type RuntimeCapabilities,
  type StartResult,
  type TaskHandle,
  type TaskSpec,
  type TaskStatus,
} from '../types.ts';
import type { ArtifactFetcher } from '../artifacts/index.ts';
import { taskCommand, taskEnvironment } from '../task-env.ts';
import { portIsFree } from './ports.ts';
import { groupIsOurs, groupMembers, isAlive, readCmdline, readStartTime, signalGroup } from './proc.ts';
import {
  TASK_ENV_MARK,
  cgroupMembers,
  createTaskCgroup,
  killCgroup,
  markedProcesses,
  prepareCgroupRoot,
  removeCgroup,
  signalAll,
} from './tree.ts';
import {
  EXIT_FILE,
  SERVICE_PID_FILE,
  TASK_FILE,
  WRAPPER,
  classifyExit,
  readExit,
  readServicePid,
  readTaskFile,
  sandboxName,
  sandboxPath,
  writeExitSignal,
  writeJsonAtomic,
  type ExitStatus,
  type TaskFile,
} from './sandbox.ts';

export type RuntimeLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

export interface ProcessRuntimeOptions {
  dataDir: string;
  /** default 31000-31999 */
  portRange?: PortRange;
  /** default: this machine's parallelism and total memory */
  capacity?: Capacity;
  /** where tasks are reachable; ports are probed here. Default 127.0.0.1 */
  host?: string;
  logger?: RuntimeLogger;
  /** liveness poll of re-adopted tasks; default 250 ms */
  pollIntervalMs?: number;
  /** how long stop() waits for a SIGKILLed group to disappear; default 5 s */
  killWaitMs?: number;
  /** put each task in its own cgroup v2 when the machine allows it; default true */
  cgroups?: boolean;
  /** this machine (default machineIdentity()): tasks of another are refused, never guessed at */
  machine?: string;
  /**
   * Data dirs of other schedulers on this machine (sharing a PostgreSQL store): find() looks
   * there too, for a task a leader that died had started but not recorded.
   */
  peerDataDirs?: () => Promise<string[]>;
  /** fetches a task's artifacts (uris) into its sandbox before it starts */
  artifacts?: ArtifactFetcher;
}

/** /etc/machine-id (or dbus's) and the hostname: where a process task lives. */
export function machineIdentity(): string {
  let id = '';
  for (const file of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      id = readFileSync(file, 'utf8').trim();
      if (id) break;
    } catch {
      // try the next one
    }
  }
  return `${id || 'no-machine-id'}/${hostname()}`;
}

/** What the process runtime keeps in a task handle (persisted by the engine as JSON). */
export type ProcessTaskHandle = TaskHandle & {
  /** the wrapper: leader of the task's process group */
  pid: number;
  startTime: number;
  ports: number[];
  sandbox: string;
  /** the service's own process (what the wrapper's child exec'd into), once known */
  servicePid?: number;
  cgroup?: string;
  /** the machine it runs on (machineIdentity()); absent in handles of older versions */
  machine?: string;
};

type ExitListener = (taskId: string, status: ExitStatus) => void;

interface Tracked {
  taskId: string;
  sandbox: string;
  pid: number;
  startTime: number;
  cgroup?: string;
  /** set for wrappers this object spawned */
  child?: ChildProcess;
  watcher?: FSWatcher;
  /** resolves with the signal that ended our own wrapper child (null: it exited) */
  childExit?: Promise<string | null>;
  /** stop() in progress: it handles leftovers within its grace */
  stopping?: boolean;
  /** the last signal stop() sent the group, recorded if the wrapper dies without a record */
  sent?: string;
}

const noopLogger: RuntimeLogger = { info() {}, warn() {}, error() {} };
const STOP_POLL_MS = 20;
const REPORTED_LIMIT = 100_000;
/** how long stop() waits for a just-started wrapper to fork its task */
const STARTUP_WAIT_MS = 2_000;
/** how long start() waits for the service's pid to be written (it is, within milliseconds) */
const SERVICE_PID_WAIT_MS = 1_000;
const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';
/** how long a port a task found taken is skipped */
const PORT_QUARANTINE_MS = 60_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function createProcessRuntime(options: ProcessRuntimeOptions): ProcessRuntime {
  return new ProcessRuntime(options);
}

export class ProcessRuntime implements Runtime {
  readonly dataDir: string;
  readonly host: string;
  readonly machine: string;
  readonly #peerDataDirs: () => Promise<string[]>;
  readonly #artifacts: ArtifactFetcher | undefined;
  readonly #ledger: ResourceLedger;
  readonly #log: RuntimeLogger;
  readonly #pollMs: number;
  readonly #killWaitMs: number;
  /** the folder of per-task cgroups, or undefined where the machine allows none */
  readonly #cgroupRoot: string | undefined;
  readonly #listeners: ExitListener[] = [];
  /** running tasks whose exit we report */
  readonly #tracked = new Map<string, Tracked>();
  /** exits already reported (or returned by recover), so each is reported once */
  readonly #reported = new Set<string>();
  readonly #stops = new Map<string, Promise<void>>();
  #poll: NodeJS.Timeout | undefined;
  #closed = false;
  /** starts run one at a time: port probing is async and must not hand a port out twice */
  #startChain: Promise<unknown> = Promise.resolve();
  /** round-robin start of the port search, so a freed port is not reused at once */
  #portCursor = 0;
  /** ports a task found taken (EADDRINUSE), not handed out again until then */
  readonly #quarantine = new Map<number, number>();

  constructor(options: ProcessRuntimeOptions) {
    this.dataDir = options.dataDir;
    this.host = options.host ?? '127.0.0.1';
    this.machine = options.machine ?? machineIdentity();
    this.#peerDataDirs = options.peerDataDirs ?? (async () => []);
    this.#artifacts = options.artifacts;
    this.#ledger = new ResourceLedger(
      options.capacity ?? { cpus: availableParallelism(), memoryMb: Math.floor(totalmem() / 1024 / 1024) },
      options.portRange ?? { from: 31000, to: 31999 },
    );
    this.#log = options.logger ?? noopLogger;
    this.#pollMs = options.pollIntervalMs ?? 250;
    this.#killWaitMs = options.killWaitMs ?? 5_000;
    this.#cgroupRoot = options.cgroups === false ? undefined : prepareCgroupRoot(this.dataDir);
  }

  /** Whether tasks get their own cgroup here (else only the environment mark finds their tree). */
  get usesCgroups(): boolean {
    return this.#cgroupRoot !== undefined;
  }

  capabilities(): RuntimeCapabilities {
    return { name: 'process', containers: false };
  }

  onExit(listener: ExitListener): void {
    this.#listeners.push(listener);
  }

  async start(spec: TaskSpec): Promise<StartResult> {
    // Artifacts come first and outside the start queue: a slow download must not hold up
    // every other task's start.
    if (spec.artifacts?.length) {
      const early = await this.#fetchArtifacts(spec);
      if (early) return early;
    }
    const run = this.#startChain.then(() => this.#start(spec));
    this.#startChain = run.catch(() => undefined);
    return run;
  }

  /** Fills a new task's sandbox with its artifacts; a result when the start ends here. */
  async #fetchArtifacts(spec: TaskSpec): Promise<StartResult | undefined> {
    if (this.#closed) return { kind: 'error', message: 'The runtime is closed' };
    const sandbox = sandboxPath(this.dataDir, spec.taskId);
    // Started before (a restart): start() resumes it, nothing is fetched again.
    if (readTaskFile(sandbox)) return undefined;
    // A task that cannot run yet downloads nothing yet.
    const short = this.#ledger.shortfall(spec);
    if (short) return { kind: 'waiting', reason: short };
    if (!this.#artifacts)
      return { kind: 'error', message: 'This runtime was started without an artifact fetcher; the deploy has artifacts' };
    mkdirSync(sandbox, { recursive: true, mode: 0o700 });
    try {
      await this.#artifacts.fetchInto(sandbox, spec.artifacts ?? []);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.#log.warn({ taskId: spec.taskId, err: message }, 'artifact fetch failed');
      return { kind: 'error', message };
    }
    return undefined;
  }

  async #start(spec: TaskSpec): Promise<StartResult> {
    if (this.#closed) return { kind: 'error', message: 'The runtime is closed' };
    const sandbox = sandboxPath(this.dataDir, spec.taskId);
    const existing = readTaskFile(sandbox);
    if (existing) return this.#resume(existing, sandbox);

    const { command, arguments: args } = taskCommand(spec, { host: this.host });
    const useArgv = args !== undefined && args.length > 0;
    const argv = useArgv ? args : command !== undefined ? ['/bin/sh', '-c', command] : undefined;
    if (!argv || argv[0] === '') return { kind: 'error', message: 'The deploy has neither command nor arguments' };

    const short = this.#ledger.shortfall(spec);
    if (short) return { kind: 'waiting', reason: short };
    const ports = await this.#allocatePorts(spec.numPorts);
    if (typeof ports === 'string') return { kind: 'waiting', reason: ports };

    const env = this.#env(spec, ports);
    if (useArgv) {
      // The wrapper always starts, so exec's ENOENT would only show as exit 127: check first.
      const argv0 = argv[0] as string;
      if (!resolveExecutable(argv0, env.PATH ?? '', sandbox)) {
        return { kind: 'error', message: `Cannot run ${JSON.stringify(argv0)}: no such executable (PATH=${env.PATH ?? ''})` };
      }
    }

    this.#ledger.reserve(spec.taskId, { cpus: spec.cpus, memoryMb: spec.memoryMb, ports });
    try {
      return await this.#spawn(spec, sandbox, argv, env, ports);
    } catch (err) {
      this.#ledger.release(spec.taskId);
      return { kind: 'error', message: `Could not start the task: ${err instanceof Error ? err.message : String(err)}` };
    }
  }

  async #spawn(spec: TaskSpec, sandbox: string, argv: string[], env: Record<string, string>, ports: number[]): Promise<StartResult> {
    // The sandbox holds the task's env (task.json) and output: its owner's only. Created with
    // these modes (not chmod-ed after), so there is no moment another user could read them.
    mkdirSync(sandbox, { recursive: true, mode: 0o700 });
    // Leftovers of an attempt that died before task.json was written must not read as this run's exit.
    rmSync(path.join(sandbox, EXIT_FILE), { force: true });
    rmSync(path.join(sandbox, SERVICE_PID_FILE), { force: true });
    const cgroup = createTaskCgroup(this.#cgroupRoot, spec.taskId);
    const out = openSync(path.join(sandbox, 'stdout'), 'a', 0o600);
    const err = openSync(path.join(sandbox, 'stderr'), 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', WRAPPER, 'fledge-task', cgroup ? path.join(cgroup, 'cgroup.procs') : '-', ...argv], {
        cwd: sandbox,
        env,
        detached: true,
        stdio: ['ignore', out, err],
      });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    const pid = child.pid;
    if (pid === undefined) {
      const error = await new Promise<Error>((resolve) => child.once('error', resolve));
      this.#ledger.release(spec.taskId);
      return { kind: 'error', message: `Could not start the task: ${error.message}` };
    }
    // Same tick as spawn: the child exists (at worst as a zombie) until the event loop reaps it.
    const startTime = readStartTime(pid);
    if (startTime === undefined) throw new Error(`process ${pid} vanished before its start time was read`);
    const file: TaskFile = {
      version: 1,
      taskId: spec.taskId,
      pid,
      startTime,
      startedAt: Date.now(),
      host: this.host,
      machine: this.machine,
      ports,
      ...(cgroup ? { cgroup } : {}),
      spec,
    };
    writeJsonAtomic(path.join(sandbox, TASK_FILE), file);
    child.unref();
    const tracked: Tracked = { taskId: spec.taskId, sandbox, pid, startTime, child, ...(cgroup ? { cgroup } : {}) };
    tracked.childExit = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    this.#tracked.set(spec.taskId, tracked);
    void tracked.childExit.then((signal) => this.#finalizeSafely(tracked, signal ?? 'UNKNOWN'));
    // The service's pid is written by the wrapper's child as its first act: wait for it (bounded).
    await waitUntil(() => readServicePid(sandbox) !== undefined || !isAlive(pid, startTime), SERVICE_PID_WAIT_MS);
    this.#log.info({ taskId: spec.taskId, pid, servicePid: readServicePid(sandbox), ports }, 'task started');
    return { kind: 'started', handle: handleOf(file, sandbox), ports };
  }

  /** start() for a task id that already has a sandbox: hand back what is there. */
  async #resume(file: TaskFile, sandbox: string): Promise<StartResult> {
    const status = await this.inspect(handleOf(file, sandbox));
    if (status.state === 'running') {
      this.#adopt(file, sandbox);
    } else if (status.state === 'exited' && !this.#reported.has(file.taskId)) {
      // It ran and ended already; the caller learns it the usual way, once.
      queueMicrotask(() => this.#report(file.taskId, status, sandbox));
    }
    return { kind: 'started', handle: handleOf(file, sandbox), ports: file.ports };
  }

  async #allocatePorts(count: number): Promise<number[] | string> {
    const { from, to } = this.#ledger.portRange;
    const size = to - from + 1;
    const ports: number[] = [];
    let i = 0;
    for (; i < size && ports.length < count; i++) {
      const port = from + ((this.#portCursor + i) % size);
      if (this.#ledger.portInUse(port) || (this.#quarantine.get(port) ?? 0) > Date.now()) continue;
      if (await portIsFree(this.host, port)) ports.push(port);
    }
    if (ports.length < count) {
      return `${this.#ledger.portsShort(count, ports.length)} (the others are held by tasks or bound by other processes)`;
    }
    this.#portCursor = (this.#portCursor + i) % size;
    return ports;
  }

  #env(spec: TaskSpec, ports: number[]): Record<string, string> {
    const base: Record<string, string> = { PATH: process.env.PATH ?? DEFAULT_PATH };
    if (process.env.HOME !== undefined) base.HOME = process.env.HOME;
    const env = taskEnvironment(spec, { host: this.host }, ports, base);
    // inherited by everything the task starts: how its whole tree is found (tree.ts)
    env[TASK_ENV_MARK] = spec.taskId;
    return env;
  }

  /**
   * Where a task's sandbox is: the handle's when it is a sandbox of another scheduler's data dir
   * on this machine (a takeover), else this data dir's. Refuses tasks of another machine.
   */
  #sandboxOf(handle: TaskHandle): string {
    const machine = handle.machine;
    if (typeof machine === 'string' && machine !== this.machine) throw new ForeignTaskError(handle.taskId, machine, this.machine);
    const own = sandboxPath(this.dataDir, handle.taskId);
    const given = handle.sandbox;
    if (
      typeof given === 'string' &&
      path.isAbsolute(given) &&
      path.basename(given) === sandboxName(handle.taskId) &&
      path.basename(path.dirname(given)) === 'tasks'
    ) {
      return path.normalize(given);
    }
    return own;
  }

  async inspect(handle: TaskHandle): Promise<TaskStatus> {
    const status = await this.#inspect(handle);
    return status.state === 'exited' ? this.#classify(this.#sandboxOf(handle), status) : status;
  }

  /** An exit with what the sandbox tells about it (a port that was taken: sandbox.ts classifyExit). */
  #classify(sandbox: string, status: ExitStatus): ExitStatus {
    const file = readTaskFile(sandbox);
    const classified = classifyExit(sandbox, status, file?.startedAt);
    if (classified.portInUse) {
      // Someone else holds one of its ports: hand them to nobody for a while.
      const until = Date.now() + PORT_QUARANTINE_MS;
      for (const port of file?.ports ?? []) this.#quarantine.set(port, until);
    }
    return classified;
  }

  async #inspect(handle: TaskHandle): Promise<TaskStatus> {
    const sandbox = this.#sandboxOf(handle);
    if (!existsSync(sandbox)) return { state: 'lost', message: `The task's sandbox ${sandbox} is gone` };
    const exit = readExit(sandbox);
    if (exit) return exit;
    const file = readTaskFile(sandbox);
    const pid = file?.pid ?? numberField(handle, 'pid');
    const startTime = file?.startTime ?? numberField(handle, 'startTime');
    if (pid === undefined || startTime === undefined)
      return { state: 'lost', message: `The task's sandbox ${sandbox} has no ${TASK_FILE}` };
    if (isAlive(pid, startTime)) return { state: 'running', pid, startedAt: file?.startedAt ?? 0 };
    // Gone without a record (or exiting right now): settle it once, the same way for every caller.
    const tracked = this.#tracked.get(handle.taskId);
    if (tracked?.childExit) {
      // Our child, dead but not reaped yet: its 'exit' event tells how it ended.
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 1_000)));
      const signal = await Promise.race([tracked.childExit, timeout]).finally(() => clearTimeout(timer));
      return this.#finalize(tracked, signal ?? 'UNKNOWN');
    }
    if (tracked) return this.#finalize(tracked, 'UNKNOWN');
    writeExitSignal(sandbox, 'UNKNOWN');
    return readExit(sandbox) ?? { state: 'exited', exitCode: null, signal: 'UNKNOWN', finishedAt: Date.now() };
  }

  recover(handle: TaskHandle): Promise<TaskStatus> {
    // Through the start queue: re-reserving ports must not interleave with a port search.
    const run = this.#startChain.then(() => this.#recover(handle));
    this.#startChain = run.catch(() => undefined);
    return run;
  }

  async #recover(handle: TaskHandle): Promise<TaskStatus> {
    const status = await this.inspect(handle);
    if (status.state === 'running') {
      const sandbox = this.#sandboxOf(handle);
      const file = readTaskFile(sandbox);
      if (file) this.#adopt(file, sandbox);
    } else if (status.state === 'exited') {
      // The caller learns this exit from the return value; do not report it again.
      this.#remember(handle.taskId);
      // The exit was recorded while nobody watched (e.g. a non-exec'd command whose shell died on
      // SIGTERM while the scheduler was down): what is left of the group would hold ports for ever.
      await this.#killOrphans(handle);
    }
    return status;
  }

  /** Hold a live task's resources and watch it for its exit. */
  #adopt(file: TaskFile, sandbox: string): void {
    if (this.#closed) return;
    if (!this.#ledger.has(file.taskId)) {
      this.#ledger.reserve(file.taskId, { cpus: file.spec?.cpus ?? 0, memoryMb: file.spec?.memoryMb ?? 0, ports: file.ports });
    }
    if (this.#tracked.has(file.taskId)) return;
    const tracked: Tracked = {
      taskId: file.taskId,
      sandbox,
      pid: file.pid,
      startTime: file.startTime,
      ...(file.cgroup ? { cgroup: file.cgroup } : {}),
    };
    try {
      // Event-driven in the common case: the wrapper's record appears. The poll covers the rest.
      tracked.watcher = watch(sandbox, (_event, name) => {
        if (name === EXIT_FILE && readExit(sandbox)) void this.#finalizeSafely(tracked, 'UNKNOWN');
      });
      tracked.watcher.on('error', () => tracked.watcher?.close());
      tracked.watcher.unref();
    } catch {
      // no watch: the poll alone will do
    }
    this.#tracked.set(file.taskId, tracked);
    this.#ensurePoll();
  }

  #ensurePoll(): void {
    if (this.#poll || this.#closed) return;
    this.#poll = setInterval(() => {
      let adopted = 0;
      for (const t of this.#tracked.values()) {
        if (t.child) continue;
        adopted++;
        if (!isAlive(t.pid, t.startTime)) void this.#finalizeSafely(t, 'UNKNOWN');
      }
      if (adopted === 0) this.#stopPoll();
    }, this.#pollMs);
    this.#poll.unref();
  }

  #stopPoll(): void {
    if (this.#poll) clearInterval(this.#poll);
    this.#poll = undefined;
  }

  /** #finalize from an event (exit, watch, poll): a failure is logged, and the poll tries again. */
  #finalizeSafely(t: Tracked, observed: string): Promise<unknown> {
    return this.#finalize(t, observed).catch((err: unknown) => this.#log.error({ err, taskId: t.taskId }, 'could not settle a task exit'));
  }

  /**
   * The wrapper is gone (or has recorded the exit): make sure a record exists, clean up what is
   * left of the group, stop watching and report once. `fallback` is the signal to record when
   * the wrapper left none.
   */
  async #finalize(t: Tracked, observed: string, fromStop = false): Promise<ExitStatus> {
    if (t.stopping && !fromStop && this.#stops.has(t.taskId)) {
      // A stop in progress reports the exit when the whole group is gone (a shell may die on
      // SIGTERM long before the service it started): reporting earlier would free ports in use.
      return readExit(t.sandbox) ?? { state: 'exited', exitCode: null, signal: observed, finishedAt: Date.now() };
    }
    const fallback = observed !== 'UNKNOWN' ? observed : (t.sent ?? observed);
    if (this.#closed) return readExit(t.sandbox) ?? { state: 'exited', exitCode: null, signal: fallback, finishedAt: Date.now() };
    let status = readExit(t.sandbox);
    if (!status) {
      try {
        writeExitSignal(t.sandbox, fallback);
      } catch (err) {
        this.#log.warn({ err, taskId: t.taskId }, 'could not record the exit');
      }
      status = readExit(t.sandbox) ?? { state: 'exited', exitCode: null, signal: fallback, finishedAt: Date.now() };
      this.#log.warn({ taskId: t.taskId, pid: t.pid, signal: status.signal }, 'task wrapper ended without recording an exit');
    }
    if (this.#tracked.get(t.taskId) === t) {
      this.#tracked.delete(t.taskId);
      t.watcher?.close();
      if (!t.stopping) this.#killLeftovers(t);
    }
    this.#removeCgroupWhenEmpty(t.cgroup);
    this.#report(t.taskId, status, t.sandbox);
    return status;
  }

  /** Leftovers just got SIGKILL: the kernel refuses to remove the cgroup until they are gone. */
  #removeCgroupWhenEmpty(cgroup: string | undefined): void {
    if (cgroup === undefined) return;
    void waitUntil(() => cgroupMembers(cgroup).length === 0, this.#killWaitMs).then(
      () => removeCgroup(cgroup),
      () => undefined,
    );
  }

  /** An untracked task with a recorded exit: end whatever is left in its group, and wait for it. */
  async #killOrphans(handle: TaskHandle): Promise<void> {
    const sandbox = this.#sandboxOf(handle);
    const file = readTaskFile(sandbox);
    const pid = file?.pid ?? numberField(handle, 'pid');
    const startTime = file?.startTime ?? numberField(handle, 'startTime');
    if (pid === undefined || startTime === undefined) return;
    const cgroup = file?.cgroup ?? stringField(handle, 'cgroup');
    const t: Tracked = { taskId: handle.taskId, sandbox, pid, startTime, ...(cgroup ? { cgroup } : {}) };
    this.#killLeftovers(t);
    // "Exited" must mean the ports are free: wait until the whole tree is really gone.
    await waitUntil(() => treeMembers(t).filter((p) => p !== pid).length === 0, this.#killWaitMs);
    removeCgroup(cgroup);
  }

  /** Processes the task left behind (children, daemons that left its group) would hold ports: end them. */
  #killLeftovers(t: Tracked): void {
    const left = treeMembers(t).filter((pid) => pid !== t.pid);
    if (left.length === 0) return;
    this.#log.warn({ taskId: t.taskId, pids: left }, 'killing processes the task left behind');
    killTree(t, 'SIGKILL');
  }

  #report(taskId: string, exit: ExitStatus, sandbox: string): void {
    if (this.#closed || this.#reported.has(taskId)) return;
    this.#remember(taskId);
    const status = this.#classify(sandbox, exit);
    this.#log.info(
      { taskId, exitCode: status.exitCode, signal: status.signal, ...(status.portInUse ? { portInUse: true } : {}) },
      'task exited',
    );
    for (const listener of this.#listeners) {
      try {
        listener(taskId, status);
      } catch (err) {
        this.#log.error({ err, taskId }, 'exit listener failed');
      }
    }
  }

  /** Remember a reported exit; the oldest are forgotten past a bound, long after anyone asks. */
  #remember(taskId: string): void {
    this.#reported.delete(taskId);
    this.#reported.add(taskId);
    if (this.#reported.size > REPORTED_LIMIT) {
      const oldest = this.#reported.values().next().value;
      if (oldest !== undefined) this.#reported.delete(oldest);
    }
  }

  stop(handle: TaskHandle, graceMs: number): Promise<void> {
    const running = this.#stops.get(handle.taskId);
    if (running) return running;
    const work = this.#stop(handle, graceMs).finally(() => this.#stops.delete(handle.taskId));
    this.#stops.set(handle.taskId, work);
    return work;
  }

  async #stop(handle: TaskHandle, graceMs: number): Promise<void> {
    const sandbox = this.#sandboxOf(handle);
    const file = readTaskFile(sandbox);
    const pid = file?.pid ?? numberField(handle, 'pid');
    const startTime = file?.startTime ?? numberField(handle, 'startTime');
    if (pid === undefined || startTime === undefined) return;
    const cgroup = file?.cgroup ?? stringField(handle, 'cgroup');
    const t = this.#tracked.get(handle.taskId) ?? { taskId: handle.taskId, sandbox, pid, startTime, ...(cgroup ? { cgroup } : {}) };
    if (readExit(sandbox) && !isAlive(pid, startTime)) {
      await this.#killOrphans(handle);
      await this.#finalize(t, 'UNKNOWN', true);
      return;
    }
    if (!groupIsOurs(pid, startTime)) {
      // The pid belongs to someone else now: the wrapper is long gone; end what it left.
      await this.#killOrphans(handle);
      await this.#finalize(t, 'UNKNOWN', true);
      return;
    }
    t.stopping = true;
    // Right after start the task may not have been exec'd yet: before the wrapper forks, and
    // between fork and exec (the child still runs the wrapper's trap), a SIGTERM is swallowed
    // and the task would sit out the whole grace period. Wait until a member runs something else.
    await waitUntil(() => !isAlive(pid, startTime) || taskLaunched(pid), STARTUP_WAIT_MS);
    t.sent = 'SIGTERM';
    // Gone = wrapper dead and nothing left of its tree (group, cgroup, marked processes).
    const gone = () => !isAlive(pid, startTime) && treeMembers(t).length === 0;
    killTree(t, 'SIGTERM');
    if (!(await waitUntil(gone, graceMs))) {
      t.sent = 'SIGKILL';
      killTree(t, 'SIGKILL');
      if (!(await waitUntil(gone, this.#killWaitMs))) {
        this.#log.error({ taskId: handle.taskId, pid, left: treeMembers(t) }, 'task still has processes after SIGKILL');
      }
    }
    this.#log.info({ taskId: handle.taskId, pid, signal: t.sent }, 'task stopped');
    await this.#finalize(t, 'UNKNOWN', true);
  }

  async find(taskId: string): Promise<TaskHandle | undefined> {
    for (const dir of [this.dataDir, ...(await this.#peerDataDirs().catch(() => []))]) {
      const sandbox = sandboxPath(dir, taskId);
      const file = readTaskFile(sandbox);
      if (file && (file.machine === undefined || file.machine === this.machine)) return handleOf(file, sandbox);
    }
    return undefined;
  }

  async logs(handle: TaskHandle, which: 'stdout' | 'stderr', offset: number, length: number): Promise<LogChunk> {
    return readLogChunk(path.join(this.#sandboxOf(handle), which), offset, length);
  }

  async release(handle: TaskHandle): Promise<void> {
    this.#ledger.release(handle.taskId);
  }

  async purge(handle: TaskHandle): Promise<void> {
    // The sandbox the handle names (a peer scheduler's data dir on this machine, too).
    const sandbox = this.#sandboxOf(handle);
    if ((await this.inspect(handle)).state === 'running') return;
    this.#tracked.delete(handle.taskId);
    this.#ledger.release(handle.taskId);
    rmSync(sandbox, { recursive: true, force: true });
  }

  /** What is reserved now (for diagnostics and tests). */
  usage(): { cpus: number; memoryMb: number; tasks: number } {
    return { ...this.#ledger.used(), tasks: this.#tracked.size };
  }

  /** What the local host holds: reserved cpus, memory, ports and the tasks holding them. */
  hostUsage(): HostUsage {
    return {
      ...this.#ledger.used(),
      ports: this.#ledger.portsInUse(),
      portsInRange: this.#ledger.portsInRange(),
      heldPorts: this.#ledger.heldPorts(),
      tasks: this.#ledger.taskIds(),
    };
  }

  capacity(): Capacity {
    return { ...this.#ledger.capacity };
  }

  portRange(): PortRange {
    return this.#ledger.portRange;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#stopPoll();
    for (const t of this.#tracked.values()) t.watcher?.close();
    this.#tracked.clear();
    // Only an empty one goes: tasks outlive the scheduler, and so do their cgroups.
    removeCgroup(this.#cgroupRoot);
  }
}

function handleOf(file: TaskFile, sandbox: string): ProcessTaskHandle {
  const servicePid = readServicePid(sandbox);
  return {
    taskId: file.taskId,
    pid: file.pid,
    startTime: file.startTime,
    ports: file.ports,
    sandbox,
    ...(servicePid !== undefined ? { servicePid } : {}),
    ...(file.cgroup ? { cgroup: file.cgroup } : {}),
    ...(file.machine !== undefined ? { machine: file.machine } : {}),
  };
}

/** Every live process of the task: its group (while ours), its cgroup, and its marked processes. */
function treeMembers(t: Pick<Tracked, 'taskId' | 'pid' | 'startTime' | 'cgroup'>): number[] {
  const all = new Set<number>(groupIsOurs(t.pid, t.startTime) ? groupMembers(t.pid) : []);
  for (const pid of cgroupMembers(t.cgroup)) all.add(pid);
  for (const pid of markedProcesses(t.taskId)) all.add(pid);
  return [...all];
}

function killTree(t: Pick<Tracked, 'taskId' | 'pid' | 'startTime' | 'cgroup'>, signal: NodeJS.Signals): void {
  if (groupIsOurs(t.pid, t.startTime)) signalGroup(t.pid, signal);
  if (signal === 'SIGKILL') killCgroup(t.cgroup);
  signalAll(
    treeMembers(t).filter((pid) => pid !== t.pid || isAlive(t.pid, t.startTime)),
    signal,
  );
}

function stringField(handle: TaskHandle, key: string): string | undefined {
  const value = handle[key];
  return typeof value === 'string' ? value : undefined;
}

function numberField(handle: TaskHandle, key: string): number | undefined {
  const value = handle[key];
  return typeof value === 'number' ? value : undefined;
}

/** The wrapper's group holds a process that has exec'd away from the wrapper: the task. */
function taskLaunched(wrapperPid: number): boolean {
  const wrapper = readCmdline(wrapperPid);
  return groupMembers(wrapperPid).some((p) => p !== wrapperPid && readCmdline(p) !== wrapper);
}

/** Poll a condition until it holds or timeoutMs passes; true when it held. */
async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (condition()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(STOP_POLL_MS, Math.max(1, deadline - Date.now())));
  }
}

/** Resolve argv[0] the way exec does: a path (relative to cwd) or a PATH search. */
export function resolveExecutable(command: string, pathVar: string, cwd: string): string | undefined {
  const candidates = command.includes('/')
    ? [path.resolve(cwd, command)]
    : pathVar.split(':').map((dir) => path.resolve(cwd, dir || '.', command));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, fsConstants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // try the next one
    }
  }
  return undefined;
}
