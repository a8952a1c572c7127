/*
 * A scriptable in-memory runtime for engine tests: tasks "run" without processes, no timers,
 * deterministic. Capacity and ports are accounted like the process runtime does (ports: the
 * lowest free ones of the range), so waiting/release behave the same.
 *
 * By default start() starts. A test can script start() per task id or per deploy id (task
 * scripts win) to fail, to wait, or to crash right after starting; and it can end a running
 * task at any time with exit(). stop() ends a task with SIGTERM at once. Exits are reported
 * synchronously through onExit (a scripted crash on the next microtask, after start resolves;
 * or, scripted so, before start resolves, the exit handled first).
 */
import { ResourceLedger, type Capacity, type HostUsage, type PortRange } from '../ledger.ts';
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
import { taskEnvironment } from '../task-env.ts';

type ExitStatus = Extract<TaskStatus, { state: 'exited' }>;

/** What start() does for a scripted task or deploy. */
export type FakeStartBehaviour =
  /** start normally (the default) */
  | 'start'
  /** { kind: 'error', message } */
  | { error: string }
  /** { kind: 'waiting', reason }, as when capacity is short */
  | { waiting: string }
  /** start, then exit with this code right after start() resolves (portInUse: as after an EADDRINUSE; stderr: what it wrote first) */
  | { exit: number; portInUse?: boolean; stderr?: string }
  /** start, and exit with this code before start() resolves (a process that ends at once) */
  | { exitWhileStarting: number };

export interface FakeRuntimeOptions {
  /** default: plenty (1000 cpus, 1 TB) */
  capacity?: Capacity;
  /** default 31000-31999 */
  portRange?: PortRange;
  /** timestamps for startedAt/finishedAt; default Date.now */
  now?: () => number;
}

export interface FakeRuntime extends Runtime {
  /** task ids that start() started, in order (idempotent repeats not included) */
  readonly started: readonly string[];
  /** task ids passed to stop(), in order, each once */
  readonly stopped: readonly string[];
  /** task ids passed to release(), in order, each once */
  readonly released: readonly string[];
  script(target: { taskId: string } | { deployId: string }, behaviour: FakeStartBehaviour): void;
  /** End a running task now with an exit code (or a signal); reports through onExit. */
  exit(taskId: string, code: number | null, signal?: string | null, more?: { portInUse?: boolean }): void;
  /** exit() every running task of a deploy. */
  exitDeploy(deployId: string, code: number | null, signal?: string | null): void;
  /** The task disappears without a trace: inspect/recover say lost, find finds nothing. */
  lose(taskId: string, message?: string): void;
  /** The task lives on another machine: inspect, recover and stop refuse it (ForeignTaskError). */
  moveToMachine(taskId: string, machine: string): void;
  /** Append to a task's stdout/stderr, for logs(). */
  writeLog(taskId: string, which: 'stdout' | 'stderr', text: string): void;
  /** The spec and the env (with PORT*, TASK_ID...) a task was started with. */
  spec(taskId: string): TaskSpec | undefined;
  env(taskId: string): Record<string, string> | undefined;
  /** Ids of tasks running now. */
  running(): string[];
  /** Reserved capacity now. */
  usage(): Capacity;
  /** What it holds, as a host reports it. */
  hostUsage(): HostUsage;
  capacity(): Capacity;
  portRange(): PortRange;
}

interface FakeTask {
  spec: TaskSpec;
  env: Record<string, string>;
  ports: number[];
  startedAt: number;
  status: TaskStatus;
  logs: { stdout: string; stderr: string };
}

export function createFakeRuntime(options: FakeRuntimeOptions = {}): FakeRuntime {
  return new InMemoryFakeRuntime(options);
}

class InMemoryFakeRuntime implements FakeRuntime {
  readonly started: string[] = [];
  readonly stopped: string[] = [];
  readonly released: string[] = [];
  readonly #tasks = new Map<string, FakeTask>();
  readonly #taskScripts = new Map<string, FakeStartBehaviour>();
  readonly #deployScripts = new Map<string, FakeStartBehaviour>();
  readonly #reported = new Set<string>();
  #listeners: ((taskId: string, status: ExitStatus) => void)[] = [];
  readonly #ledger: ResourceLedger;
  readonly #now: () => number;

  constructor(options: FakeRuntimeOptions) {
    this.#ledger = new ResourceLedger(
      options.capacity ?? { cpus: 1000, memoryMb: 1_000_000 },
      options.portRange ?? { from: 31000, to: 31999 },
    );
    this.#now = options.now ?? Date.now;
  }

  capabilities(): RuntimeCapabilities {
    return { name: 'fake', containers: false };
  }

  script(target: { taskId: string } | { deployId: string }, behaviour: FakeStartBehaviour): void {
    if ('taskId' in target) this.#taskScripts.set(target.taskId, behaviour);
    else this.#deployScripts.set(target.deployId, behaviour);
  }

  async start(spec: TaskSpec): Promise<StartResult> {
    const known = this.#tasks.get(spec.taskId);
    if (known) return { kind: 'started', handle: handleOf(spec.taskId, known.ports), ports: known.ports };
    const behaviour = this.#taskScripts.get(spec.taskId) ?? this.#deployScripts.get(spec.deployId) ?? 'start';
    if (typeof behaviour === 'object' && 'error' in behaviour) return { kind: 'error', message: behaviour.error };
    if (typeof behaviour === 'object' && 'waiting' in behaviour) return { kind: 'waiting', reason: behaviour.waiting };
    // A container may run its image's own command.
    if ((spec.arguments?.length ?? 0) === 0 && spec.command === undefined && !spec.container) {
      return { kind: 'error', message: 'The deploy has neither command nor arguments' };
    }
    const short = this.#ledger.shortfall(spec);
    if (short) return { kind: 'waiting', reason: short };
    const ports = this.#lowestFreePorts(spec.numPorts);
    this.#ledger.reserve(spec.taskId, { cpus: spec.cpus, memoryMb: spec.memoryMb, ports });
    const startedAt = this.#now();
    this.#tasks.set(spec.taskId, {
      spec,
      env: envOf(spec, ports),
      ports,
      startedAt,
      status: { state: 'running', startedAt },
      logs: { stdout: '', stderr: '' },
    });
    this.started.push(spec.taskId);
    if (typeof behaviour === 'object' && 'exit' in behaviour) {
      if (behaviour.stderr !== undefined) this.writeLog(spec.taskId, 'stderr', behaviour.stderr);
      queueMicrotask(() => this.exit(spec.taskId, behaviour.exit, null, behaviour.portInUse ? { portInUse: true } : {}));
    }
    if (typeof behaviour === 'object' && 'exitWhileStarting' in behaviour) {
      this.exit(spec.taskId, behaviour.exitWhileStarting);
      // Let the engine record that exit before it learns of the start.
      await new Promise((resolve) => setImmediate(resolve));
    }
    return { kind: 'started', handle: handleOf(spec.taskId, ports), ports };
  }

  #lowestFreePorts(count: number): number[] {
    const ports: number[] = [];
    for (let port = this.#ledger.portRange.from; port <= this.#ledger.portRange.to && ports.length < count; port++) {
      if (!this.#ledger.portInUse(port)) ports.push(port);
    }
    return ports;
  }

  exit(taskId: string, code: number | null, signal: string | null = null, more: { portInUse?: boolean } = {}): void {
    const task = this.#tasks.get(taskId);
    if (!task || task.status.state !== 'running') return;
    const status: ExitStatus = {
      state: 'exited',
      exitCode: code,
      signal,
      finishedAt: this.#now(),
      ...(more.portInUse ? { portInUse: true } : {}),
    };
    task.status = status;
    this.#report(taskId, status);
  }

  exitDeploy(deployId: string, code: number | null, signal: string | null = null): void {
    for (const [taskId, task] of this.#tasks) {
      if (task.spec.deployId === deployId) this.exit(taskId, code, signal);
    }
  }

  readonly #foreign = new Map<string, string>();

  moveToMachine(taskId: string, machine: string): void {
    this.#foreign.set(taskId, machine);
  }

  #refuseForeign(taskId: string): void {
    const machine = this.#foreign.get(taskId);
    if (machine) throw new ForeignTaskError(taskId, machine, 'fake-machine');
  }

  lose(taskId: string, message = 'The task vanished'): void {
    const task = this.#tasks.get(taskId);
    if (task) task.status = { state: 'lost', message };
  }

  writeLog(taskId: string, which: 'stdout' | 'stderr', text: string): void {
    const task = this.#tasks.get(taskId);
    if (task) task.logs[which] += text;
  }

  spec(taskId: string): TaskSpec | undefined {
    return this.#tasks.get(taskId)?.spec;
  }

  env(taskId: string): Record<string, string> | undefined {
    return this.#tasks.get(taskId)?.env;
  }

  running(): string[] {
    return [...this.#tasks].filter(([, t]) => t.status.state === 'running').map(([id]) => id);
  }

  usage(): Capacity {
    return this.#ledger.used();
  }

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

  #report(taskId: string, status: ExitStatus): void {
    if (this.#reported.has(taskId)) return;
    this.#reported.add(taskId);
    for (const listener of this.#listeners) listener(taskId, status);
  }

  async inspect(handle: TaskHandle): Promise<TaskStatus> {
    this.#refuseForeign(handle.taskId);
    return this.#tasks.get(handle.taskId)?.status ?? { state: 'lost', message: `The fake runtime has no task ${handle.taskId}` };
  }

  async stop(handle: TaskHandle, _graceMs: number): Promise<void> {
    this.#refuseForeign(handle.taskId);
    if (!this.stopped.includes(handle.taskId)) this.stopped.push(handle.taskId);
    this.exit(handle.taskId, null, 'SIGTERM');
  }

  async recover(handle: TaskHandle): Promise<TaskStatus> {
    this.#refuseForeign(handle.taskId);
    const task = this.#tasks.get(handle.taskId);
    if (!task) return { state: 'lost', message: `The fake runtime has no task ${handle.taskId}` };
    if (task.status.state === 'running') {
      if (!this.#ledger.has(handle.taskId)) {
        this.#ledger.reserve(handle.taskId, { cpus: task.spec.cpus, memoryMb: task.spec.memoryMb, ports: task.ports });
      }
    } else if (task.status.state === 'exited') {
      // The caller learns this exit from the return value.
      this.#reported.add(handle.taskId);
    }
    return task.status;
  }

  async find(taskId: string): Promise<TaskHandle | undefined> {
    const task = this.#tasks.get(taskId);
    return task && task.status.state !== 'lost' ? handleOf(taskId, task.ports) : undefined;
  }

  async logs(handle: TaskHandle, which: 'stdout' | 'stderr', offset: number, length: number): Promise<LogChunk> {
    const bytes = Buffer.from(this.#tasks.get(handle.taskId)?.logs[which] ?? '', 'utf8');
    const start = Math.min(Math.max(0, offset), bytes.length);
    const chunk = bytes.subarray(start, start + Math.max(0, length));
    return { path: `fake://${handle.taskId}/${which}`, offset: start, data: chunk.toString('utf8'), nextOffset: start + chunk.length };
  }

  async release(handle: TaskHandle): Promise<void> {
    this.#ledger.release(handle.taskId);
    if (!this.released.includes(handle.taskId)) this.released.push(handle.taskId);
  }

  async purge(handle: TaskHandle): Promise<void> {
    if (this.#tasks.get(handle.taskId)?.status.state === 'running') return;
    this.#tasks.delete(handle.taskId);
    this.#ledger.release(handle.taskId);
  }

  /** Like a scheduler shutting down: tasks keep "running"; listeners of this life are dropped. */
  async close(): Promise<void> {
    this.#listeners = [];
  }

  onExit(listener: (taskId: string, status: ExitStatus) => void): void {
    this.#listeners.push(listener);
  }
}

function handleOf(taskId: string, ports: number[]): TaskHandle {
  return { taskId, ports: [...ports], runtime: 'fake' };
}

function envOf(spec: TaskSpec, ports: number[]): Record<string, string> {
  return taskEnvironment(spec, { host: '127.0.0.1' }, ports);
}
