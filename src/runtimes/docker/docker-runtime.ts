/*
 * The `docker` runtime: each task is a container on one Docker host, driven through the Docker
 * Engine API. Containers outlive the scheduler, like process tasks do.
 *
 * Design:
 * - Identity. A container is named after its task (fledge-<installation>-<task id>) and carries
 *   labels: installation, task, request, deploy, instance, host, ports, cpus, memory. The name
 *   makes start() idempotent across crashes (a second create conflicts and the existing
 *   container is resumed); the labels let find() and recover() rebuild everything from Docker
 *   alone, and keep two Fledge installations sharing a Docker host apart.
 * - A sandbox on the scheduler's machine (<dataDir>/hosts/<host>/tasks/<task>) holds task.json,
 *   the exit record and the copied stdout/stderr (logs.ts). Once an exit is recorded there and
 *   the output is copied, the container is removed: the sandbox answers for it from then on.
 * - Exits are learned from Docker's event stream (`die`, filtered by the installation label);
 *   when the stream (re)connects, every tracked container is inspected, so an exit missed while
 *   the stream was down, or while the scheduler was, is still learned. OOM kills are reported
 *   with their reason (State.OOMKilled).
 * - stop() sends the stop signal (SIGTERM unless the deploy's stop-signal), waits up to the
 *   grace period, then SIGKILL. An init process is PID 1 in every container, so the signal
 *   reaches the task and the exit code reflects it (128+n reads as signal n, as for processes).
 * - Capacity (cpus, memory) defaults to what `docker info` reports; ports come from the host's
 *   range. Reservations are in memory and rebuilt by recover().
 * - A host that does not answer: inspect/recover report the task as running (its state is
 *   unknown, not ended); stop() fails and is retried by the engine; start() waits.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import type { Logger } from '../../logger.ts';
import { ResourceLedger, type Capacity, type HostUsage, type PortRange } from '../ledger.ts';
import { readLogChunk } from '../log-file.ts';
import { portIsFree } from '../process/ports.ts';
import { sandboxName, writeJsonAtomic } from '../process/sandbox.ts';
import type { LogChunk, Runtime, RuntimeCapabilities, StartResult, TaskHandle, TaskSpec, TaskStatus } from '../types.ts';
import { ArtifactError, type ArtifactFetcher } from '../artifacts/index.ts';
import { taskCommand, taskEnvironment } from '../task-env.ts';
import { DockerApiError, DockerUnreachableError, type ContainerInspect, type ContainerState, type DockerClient } from './client.ts';
import { literalHostPorts } from '../../core/container.ts';
import { LABELS, planContainer } from './container-config.ts';
import { LogCopier } from './logs.ts';

type ExitStatus = Extract<TaskStatus, { state: 'exited' }>;
type ExitListener = (taskId: string, status: ExitStatus) => void;
export type RuntimeLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

export interface DockerRuntimeOptions {
  /** the host's id in Fledge (labels, sandboxes, handles) */
  hostId: string;
  client: DockerClient;
  /** where the task's ports answer: health checks and the load balancer use it */
  address: string;
  /** the scheduler's data dir; sandboxes go to <dataDir>/hosts/<hostId>/tasks */
  dataDir: string;
  /** tells this Fledge's containers from another's on a shared Docker host */
  installationId: string;
  portRange: PortRange;
  /** default: what `docker info` reports */
  capacity?: Partial<Capacity>;
  /** the host is this machine: a port bound by anything else is skipped (as the process runtime does) */
  probePorts?: boolean;
  logger?: RuntimeLogger;
  /** bound of an image pull; default 10 min */
  pullTimeoutMs?: number;
  /** how long stop() waits for a SIGKILLed container; default 10 s */
  killWaitMs?: number;
  /** fetches a task's artifacts (uris) on this machine; they are copied into the container */
  artifacts?: ArtifactFetcher;
}

/** Where a container finds its artifacts: Mesos' sandbox path inside Docker containers. */
export const CONTAINER_SANDBOX = '/mnt/mesos/sandbox';

/** What the Docker runtime keeps in a task handle (persisted by the engine as JSON). */
export type DockerTaskHandle = TaskHandle & {
  host: string;
  address: string;
  containerId: string;
  container: string;
  ports: number[];
  sandbox: string;
};

/** task.json in the sandbox: written before the container is created. */
interface TaskFile {
  taskId: string;
  container: string;
  containerId?: string;
  ports: number[];
  literalPorts: number[];
  cpus: number;
  memoryMb: number;
  startedAt: number;
}

interface Tracked {
  taskId: string;
  containerId: string;
  sandbox: string;
  memoryMb: number;
  copier?: LogCopier;
  /** the copier's run, for draining before removal */
  copying?: Promise<void>;
  stopping?: boolean;
  /** the signal stop() sent last */
  sent?: string;
  /** log copies that failed in a row */
  copyFailures?: number;
}

const noopLogger: RuntimeLogger = { info() {}, warn() {}, error() {} };
const EXIT_FILE = 'exit.json';
const TASK_FILE = 'task.json';
const STOP_POLL_MS = 50;
const REPORTED_LIMIT = 100_000;
const EVENTS_BACKOFF_MS = [250, 500, 1000, 2000, 5000];
/** how long removal waits for the copied output to catch up with a stopped container */
const DRAIN_MS = 5_000;
const signalNames = new Map<number, string>(Object.entries(osConstants.signals).map(([name, n]) => [n, name]));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function createDockerRuntime(options: DockerRuntimeOptions): DockerRuntime {
  return new DockerRuntime(options);
}

export class DockerRuntime implements Runtime {
  readonly hostId: string;
  readonly address: string;
  readonly client: DockerClient;
  readonly #o: DockerRuntimeOptions;
  readonly #log: RuntimeLogger;
  readonly #ledger: ResourceLedger;
  readonly #root: string;
  readonly #listeners: ExitListener[] = [];
  readonly #tracked = new Map<string, Tracked>();
  readonly #reported = new Set<string>();
  readonly #starts = new Map<string, Promise<StartResult>>();
  readonly #stops = new Map<string, Promise<void>>();
  readonly #settling = new Map<string, Promise<ExitStatus | undefined>>();
  #capacityKnown: boolean;
  #capacityError: string | undefined;
  #capacityLoad: Promise<void> | undefined;
  #portCursor = 0;
  #events: IncomingMessage | undefined;
  #eventsTimer: NodeJS.Timeout | undefined;
  #eventsFailures = 0;
  #eventsConnecting = false;
  #closed = false;
  /** reservations and port choices happen one start at a time (port probing is async) */
  #reserveChain: Promise<unknown> = Promise.resolve();

  constructor(options: DockerRuntimeOptions) {
    this.#o = options;
    this.hostId = options.hostId;
    this.address = options.address;
    this.client = options.client;
    this.#log = options.logger ?? noopLogger;
    this.#root = path.join(options.dataDir, 'hosts', sandboxName(options.hostId), 'tasks');
    const given = options.capacity ?? {};
    this.#capacityKnown = given.cpus !== undefined && given.memoryMb !== undefined;
    this.#ledger = new ResourceLedger({ cpus: given.cpus ?? 0, memoryMb: given.memoryMb ?? 0 }, options.portRange);
  }

  capabilities(): RuntimeCapabilities {
    return { name: 'docker', containers: true };
  }

  onExit(listener: ExitListener): void {
    this.#listeners.push(listener);
  }

  /** Capacity as configured, or as `docker info` reported; undefined until known. */
  capacity(): Capacity | undefined {
    return this.#capacityKnown ? { ...this.#ledger.capacity } : undefined;
  }

  capacityError(): string | undefined {
    return this.#capacityError;
  }

  portRange(): PortRange {
    return this.#ledger.portRange;
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

  /** Learn the capacity from `docker info` (what was not configured); retried until it works. */
  loadCapacity(): Promise<void> {
    if (this.#capacityKnown) return Promise.resolve();
    this.#capacityLoad ??= (async () => {
      try {
        const info = await this.client.info();
        const given = this.#o.capacity ?? {};
        this.#ledger.capacity = {
          cpus: given.cpus ?? info.NCPU,
          memoryMb: given.memoryMb ?? Math.floor(info.MemTotal / 1024 / 1024),
        };
        this.#capacityKnown = true;
        this.#capacityError = undefined;
      } catch (err) {
        this.#capacityError = message(err);
      } finally {
        this.#capacityLoad = undefined;
      }
    })();
    return this.#capacityLoad;
  }

  // ---- start ---------------------------------------------------------------------------

  start(spec: TaskSpec): Promise<StartResult> {
    const running = this.#starts.get(spec.taskId);
    if (running) return running;
    const work = this.#start(spec).finally(() => this.#starts.delete(spec.taskId));
    this.#starts.set(spec.taskId, work);
    return work;
  }

  async #start(spec: TaskSpec): Promise<StartResult> {
    if (this.#closed) return { kind: 'error', message: 'The runtime is closed' };
    const container = spec.container;
    if (!container)
      return { kind: 'error', message: `Docker host ${this.hostId} runs containers only; the deploy has no containerInfo DOCKER` };
    const name = this.containerName(spec.taskId);
    let existing: ContainerInspect | undefined;
    try {
      existing = await this.client.inspectContainer(name);
    } catch (err) {
      return { kind: 'waiting', reason: `Docker host ${this.hostId} does not answer: ${message(err)}` };
    }
    if (existing && this.#ours(existing, spec.taskId)) return this.#resume(spec.taskId, existing);
    const ended = this.#endedEarlier(spec.taskId);
    if (ended) return ended;

    await this.loadCapacity();
    if (!this.#capacityKnown) {
      return {
        kind: 'waiting',
        reason: `Docker host ${this.hostId}: capacity unknown (docker info: ${this.#capacityError ?? 'no answer'})`,
      };
    }
    const literal = literalHostPorts(container.docker);
    const reserved = await this.#reserve(spec, literal);
    if (reserved.kind === 'waiting') return reserved;
    const { ports } = reserved;
    const sandbox = this.sandboxPath(spec.taskId);
    try {
      const image = container.docker.image;
      if (container.docker.forcePullImage || !(await this.client.inspectImage(image))) {
        try {
          await this.client.pullImage(image, this.#o.pullTimeoutMs ?? 600_000);
        } catch (err) {
          this.#ledger.release(spec.taskId);
          return { kind: 'error', message: `Cannot pull image ${image} on Docker host ${this.hostId}: ${message(err)}` };
        }
        if (!(await this.client.inspectImage(image))) {
          this.#ledger.release(spec.taskId);
          return { kind: 'error', message: `Image ${image} is not on Docker host ${this.hostId} after pulling it` };
        }
      }
      const plan = planContainer({
        taskId: spec.taskId,
        instanceNo: spec.instanceNo,
        docker: container.docker,
        volumes: container.volumes,
        ...taskCommand(spec, { host: this.address }),
        ...(spec.shell !== undefined ? { shell: spec.shell } : {}),
        env: this.#env(spec, ports),
        ports,
        cpus: spec.cpus,
        memoryMb: spec.memoryMb,
        labels: this.#labels(spec, ports, literal),
      });
      this.#makeSandbox(sandbox);
      rmSync(path.join(sandbox, EXIT_FILE), { force: true });
      let artifacts: string | undefined;
      try {
        artifacts = await this.#fetchArtifacts(spec, sandbox);
      } catch (err) {
        this.#ledger.release(spec.taskId);
        return { kind: 'error', message: message(err) };
      }
      const file: TaskFile = {
        taskId: spec.taskId,
        container: name,
        ports,
        literalPorts: literal,
        cpus: spec.cpus,
        memoryMb: spec.memoryMb,
        startedAt: Date.now(),
      };
      writeJsonAtomic(path.join(sandbox, TASK_FILE), file);
      let id: string;
      try {
        id = await this.client.createContainer(name, plan.body);
      } catch (err) {
        if (err instanceof DockerApiError && err.status === 409) {
          // Created meanwhile (a start racing this one from an earlier run): take that one.
          this.#ledger.release(spec.taskId);
          const raced = await this.client.inspectContainer(name);
          if (raced && this.#ours(raced, spec.taskId)) return this.#resume(spec.taskId, raced);
        }
        throw err;
      }
      writeJsonAtomic(path.join(sandbox, TASK_FILE), { ...file, containerId: id });
      try {
        if (artifacts) await this.#copyArtifacts(id, artifacts);
        await this.client.startContainer(id);
      } catch (err) {
        await this.client.removeContainer(id, { force: true }).catch(() => undefined);
        rmSync(sandbox, { recursive: true, force: true });
        this.#ledger.release(spec.taskId);
        return { kind: 'error', message: `Docker could not start the container: ${message(err)}` };
      }
      this.#track({ taskId: spec.taskId, containerId: id, sandbox, memoryMb: spec.memoryMb });
      this.#log.info({ taskId: spec.taskId, host: this.hostId, container: name, ports }, 'container started');
      return { kind: 'started', handle: this.#handle(spec.taskId, id, ports), ports };
    } catch (err) {
      this.#ledger.release(spec.taskId);
      if (err instanceof DockerUnreachableError)
        return { kind: 'waiting', reason: `Docker host ${this.hostId} does not answer: ${err.message}` };
      return { kind: 'error', message: `Docker host ${this.hostId} could not create the container: ${message(err)}` };
    }
  }

  /** Reserve cpus, memory and ports for a new task, one start at a time. */
  #reserve(spec: TaskSpec, literal: number[]): Promise<{ kind: 'ok'; ports: number[] } | { kind: 'waiting'; reason: string }> {
    const run = this.#reserveChain.then(async () => {
      const short = this.#ledger.shortfall(spec);
      if (short) return { kind: 'waiting' as const, reason: short };
      const taken = literal.filter((p) => this.#ledger.portInUse(p));
      if (taken.length > 0)
        return { kind: 'waiting' as const, reason: `Host port(s) ${taken.join(', ')} held by another task on ${this.hostId}` };
      const ports = await this.#allocatePorts(spec.numPorts, new Set(literal));
      if (typeof ports === 'string') return { kind: 'waiting' as const, reason: ports };
      this.#ledger.reserve(spec.taskId, { cpus: spec.cpus, memoryMb: spec.memoryMb, ports: [...ports, ...literal] });
      return { kind: 'ok' as const, ports };
    });
    this.#reserveChain = run.catch(() => undefined);
    return run;
  }

  async #allocatePorts(count: number, avoid: Set<number>): Promise<number[] | string> {
    const { from, to } = this.#ledger.portRange;
    const size = to - from + 1;
    const ports: number[] = [];
    let i = 0;
    for (; i < size && ports.length < count; i++) {
      const port = from + ((this.#portCursor + i) % size);
      if (this.#ledger.portInUse(port) || avoid.has(port)) continue;
      if (this.#o.probePorts && !(await portIsFree(this.address, port))) continue;
      ports.push(port);
    }
    this.#portCursor = (this.#portCursor + i) % size;
    if (ports.length < count) return this.#ledger.portsShort(count, ports.length);
    return ports;
  }

  /** start() for a task that ran and ended already (its container removed): it ran once, that is all. */
  #endedEarlier(taskId: string): StartResult | undefined {
    const sandbox = this.sandboxPath(taskId);
    const file = this.#readTaskFile(sandbox);
    const status = this.#readExit(sandbox);
    if (!file?.containerId || !status) return undefined;
    if (!this.#reported.has(taskId)) queueMicrotask(() => this.#report(taskId, status));
    return { kind: 'started', handle: this.#handle(taskId, file.containerId, file.ports), ports: file.ports };
  }

  /** start() for a task whose container exists already: hand it back as it is. */
  async #resume(taskId: string, c: ContainerInspect): Promise<StartResult> {
    const ports = labelPorts(c.Config.Labels?.[LABELS.ports]);
    const sandbox = this.sandboxPath(taskId);
    this.#makeSandbox(sandbox);
    if (c.State.Status === 'created') await this.client.startContainer(c.Id);
    const status = await this.#recoverContainer(taskId, c, false);
    if (status.state === 'exited' && !this.#reported.has(taskId)) queueMicrotask(() => this.#report(taskId, status));
    return { kind: 'started', handle: this.#handle(taskId, c.Id, ports), ports };
  }

  #env(spec: TaskSpec, ports: number[]): Record<string, string> {
    // TASK_HOST: where the task's ports answer (a BRIDGE task cannot tell otherwise).
    const env = taskEnvironment(spec, { host: this.address }, ports);
    if (spec.artifacts?.length) env.MESOS_SANDBOX = CONTAINER_SANDBOX;
    return env;
  }

  /**
   * Artifacts of a container task: fetched on this machine into <sandbox>/artifacts (one
   * fetcher and cache for every host), then copied into the created container at
   * CONTAINER_SANDBOX before it starts, so a remote Docker host needs no network of its own.
   */
  async #fetchArtifacts(spec: TaskSpec, sandbox: string): Promise<string | undefined> {
    if (!spec.artifacts?.length) return undefined;
    if (!this.#o.artifacts) throw new ArtifactError(spec.artifacts[0]?.url ?? 'artifact', 'this Docker runtime has no artifact fetcher');
    const dir = path.join(sandbox, 'artifacts');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    await this.#o.artifacts.fetchInto(dir, spec.artifacts);
    return dir;
  }

  async #copyArtifacts(containerId: string, dir: string): Promise<void> {
    // tar's own entries become mnt/mesos/sandbox/...: Docker unpacks them at / (which exists).
    const tar = spawn('tar', ['-c', '-C', dir, '--owner=0', '--group=0', `--transform=s,^\\./*,${CONTAINER_SANDBOX.slice(1)}/,`, '.'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    tar.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-2000)));
    const exited = new Promise<number | null>((resolve) => tar.once('close', resolve));
    await this.client.putArchive(containerId, '/', tar.stdout);
    const code = await exited;
    if (code !== 0) throw new Error(`tar of the artifacts failed (${code}): ${err.trim()}`);
  }

  #labels(spec: TaskSpec, ports: number[], literal: number[]): Record<string, string> {
    return {
      [LABELS.installation]: this.#o.installationId,
      [LABELS.task]: spec.taskId,
      [LABELS.request]: spec.requestId,
      [LABELS.deploy]: spec.deployId,
      [LABELS.instance]: String(spec.instanceNo),
      [LABELS.host]: this.hostId,
      [LABELS.ports]: ports.join(','),
      [LABELS.literalPorts]: literal.join(','),
      [LABELS.cpus]: String(spec.cpus),
      [LABELS.memoryMb]: String(spec.memoryMb),
    };
  }

  #ours(c: ContainerInspect, taskId: string): boolean {
    const labels = c.Config.Labels ?? {};
    return labels[LABELS.installation] === this.#o.installationId && labels[LABELS.task] === taskId;
  }

  /** Sandboxes hold the tasks' output: only the scheduler's user may read them. */
  #makeSandbox(sandbox: string): void {
    const hosts = path.dirname(path.dirname(this.#root));
    if (!existsSync(hosts)) mkdirSync(hosts, { recursive: true, mode: 0o700 });
    mkdirSync(sandbox, { recursive: true, mode: 0o700 });
  }

  containerName(taskId: string): string {
    const safe = taskId.replace(/[^A-Za-z0-9_.-]/g, '_');
    return `fledge-${this.#o.installationId.slice(0, 12)}-${safe}`;
  }

  sandboxPath(taskId: string): string {
    return path.join(this.#root, sandboxName(taskId));
  }

  #handle(taskId: string, containerId: string, ports: number[]): DockerTaskHandle {
    return {
      taskId,
      host: this.hostId,
      address: this.address,
      containerId,
      container: this.containerName(taskId),
      ports,
      sandbox: this.sandboxPath(taskId),
    };
  }

  // ---- watching --------------------------------------------------------------------------

  #track(t: Tracked): void {
    if (this.#closed) return;
    const known = this.#tracked.get(t.taskId);
    if (known) return;
    this.#tracked.set(t.taskId, t);
    this.#copy(t);
    this.#ensureEvents();
  }

  /** Follow the container's output into the sandbox; reconnect while it runs. */
  #copy(t: Tracked): void {
    if (t.copying || this.#closed) return;
    const copier = new LogCopier(this.client, t.containerId, t.sandbox);
    t.copier = copier;
    t.copying = copier
      .run()
      .then(() => {
        t.copyFailures = 0;
      })
      .catch(async (err: unknown) => {
        if (this.#closed || this.#tracked.get(t.taskId) !== t) return;
        // A host that does not answer fails every attempt: say so once, back off to 5 s.
        const failures = (t.copyFailures = (t.copyFailures ?? 0) + 1);
        if (failures === 1) this.#log.warn({ taskId: t.taskId, host: this.hostId, err: message(err) }, 'log copy interrupted; resuming');
        await sleep(Math.min(500 * 2 ** (failures - 1), 5_000));
        t.copying = undefined;
        if (this.#tracked.get(t.taskId) === t && !this.#closed) this.#copy(t);
      })
      .finally(() => {
        if (t.copier === copier) t.copier = undefined;
      });
  }

  #ensureEvents(): void {
    if (this.#events || this.#eventsTimer || this.#eventsConnecting || this.#closed) return;
    void this.#connectEvents();
  }

  async #connectEvents(): Promise<void> {
    const filters = JSON.stringify({
      type: ['container'],
      event: ['die', 'destroy'],
      label: [`${LABELS.installation}=${this.#o.installationId}`],
    });
    this.#eventsConnecting = true;
    try {
      const res = await this.client.stream('GET', '/events', { query: { filters } });
      this.#eventsConnecting = false;
      if (this.#closed) {
        res.destroy();
        return;
      }
      this.#events = res;
      this.#eventsFailures = 0;
      let buffered = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          this.#onEvent(line);
        }
      });
      const reconnect = () => {
        if (this.#events !== res) return;
        this.#events = undefined;
        this.#scheduleEvents();
      };
      res.on('end', reconnect);
      res.on('close', reconnect);
      res.on('error', reconnect);
      // Anything that ended while nobody listened is learned now.
      void this.#reconcileTracked();
    } catch {
      this.#eventsConnecting = false;
      this.#eventsFailures++;
      this.#scheduleEvents();
    }
  }

  #scheduleEvents(): void {
    if (this.#closed || this.#tracked.size === 0) return;
    const delay = EVENTS_BACKOFF_MS[Math.min(this.#eventsFailures, EVENTS_BACKOFF_MS.length - 1)] ?? 5000;
    this.#eventsTimer = setTimeout(() => {
      this.#eventsTimer = undefined;
      void this.#connectEvents();
    }, delay);
    this.#eventsTimer.unref();
  }

  #onEvent(line: string): void {
    let event: { Action?: string; Actor?: { Attributes?: Record<string, string> } };
    try {
      event = JSON.parse(line) as typeof event;
    } catch {
      return;
    }
    const taskId = event.Actor?.Attributes?.[LABELS.task];
    if (!taskId) return;
    const t = this.#tracked.get(taskId);
    if (!t || t.stopping) return;
    this.#settle(t).catch((err: unknown) => {
      // The daemon went away mid-settle: the next events connection reconciles every tracked task.
      this.#log.warn({ taskId, host: this.hostId, err: message(err) }, 'could not settle an exited container yet');
    });
  }

  async #reconcileTracked(): Promise<void> {
    for (const t of [...this.#tracked.values()]) {
      if (t.stopping) continue;
      try {
        const c = await this.client.inspectContainer(t.containerId);
        if (!c || !c.State.Running) await this.#settle(t);
      } catch {
        // unreachable again: the next connection tries again
      }
    }
  }

  /**
   * The one place an exit is learned: record it in the sandbox, finish copying the output,
   * remove the container, report once. Concurrent calls share the work.
   */
  #settle(t: Tracked, report = true): Promise<ExitStatus | undefined> {
    const running = this.#settling.get(t.taskId);
    if (running) return running;
    const work = this.#doSettle(t, report).finally(() => this.#settling.delete(t.taskId));
    this.#settling.set(t.taskId, work);
    return work;
  }

  async #doSettle(t: Tracked, report: boolean): Promise<ExitStatus | undefined> {
    let status = this.#readExit(t.sandbox);
    if (status) {
      await this.#drainAndRemove(t);
    } else {
      const c = await this.client.inspectContainer(t.containerId);
      if (c && (c.State.Running || c.State.Status === 'created')) return undefined;
      status = c
        ? exitStatusOf(c.State, t.memoryMb)
        : {
            state: 'exited',
            exitCode: null,
            signal: t.sent ?? 'UNKNOWN',
            finishedAt: Date.now(),
            message: 'The container disappeared from Docker',
          };
      await this.#drainAndRemove(t);
      if (status.exitCode === 126 || status.exitCode === 127) {
        // The init could not run the command: its own words say why (not found, not executable).
        const why = lastLine(t.sandbox, 'stderr', /exec .* failed/);
        if (why) status = { ...status, message: why };
      }
      writeJsonAtomic(path.join(t.sandbox, EXIT_FILE), status);
    }
    if (this.#tracked.get(t.taskId) === t) this.#tracked.delete(t.taskId);
    if (report) this.#report(t.taskId, status);
    else this.#remember(t.taskId);
    return status;
  }

  /** Let the copier reach the end of the output (bounded), then remove the container. */
  async #drainAndRemove(t: Tracked): Promise<void> {
    if (!t.copying && existsSync(t.sandbox)) this.#copy(t);
    if (t.copying) {
      const drained = await Promise.race([t.copying.then(() => true), sleep(DRAIN_MS).then(() => false)]);
      if (!drained) {
        this.#log.warn({ taskId: t.taskId, host: this.hostId }, 'the container output did not finish copying; removing it anyway');
        t.copier?.stop();
      }
    }
    // Docker may end a followed log stream at the exit before its last lines (one stream's
    // copy lags the other's): read once more, without follow, from the cursor.
    if (existsSync(t.sandbox) && !this.#closed) {
      const last = new LogCopier(this.client, t.containerId, t.sandbox);
      const read = last.run(false).then(
        () => true,
        () => false,
      );
      if (!(await Promise.race([read, sleep(DRAIN_MS).then(() => false)]))) last.stop();
    }
    await this.client.removeContainer(t.containerId, { force: true });
  }

  #readExit(sandbox: string): ExitStatus | undefined {
    try {
      const parsed = JSON.parse(readFileSync(path.join(sandbox, EXIT_FILE), 'utf8')) as ExitStatus;
      return parsed.state === 'exited' ? parsed : undefined;
    } catch {
      return undefined;
    }
  }

  #readTaskFile(sandbox: string): TaskFile | undefined {
    try {
      const parsed = JSON.parse(readFileSync(path.join(sandbox, TASK_FILE), 'utf8')) as TaskFile;
      return typeof parsed.taskId === 'string' ? parsed : undefined;
    } catch {
      return undefined;
    }
  }

  #report(taskId: string, status: ExitStatus): void {
    if (this.#closed || this.#reported.has(taskId)) return;
    this.#remember(taskId);
    this.#log.info(
      { taskId, host: this.hostId, exitCode: status.exitCode, signal: status.signal, message: status.message },
      'container exited',
    );
    for (const listener of this.#listeners) {
      try {
        listener(taskId, status);
      } catch (err) {
        this.#log.error({ err, taskId }, 'exit listener failed');
      }
    }
  }

  #remember(taskId: string): void {
    this.#reported.delete(taskId);
    this.#reported.add(taskId);
    if (this.#reported.size > REPORTED_LIMIT) {
      const oldest = this.#reported.values().next().value;
      if (oldest !== undefined) this.#reported.delete(oldest);
    }
  }

  // ---- inspect, recover, find ------------------------------------------------------------

  #containerRef(handle: TaskHandle): string {
    const sandbox = this.sandboxPath(handle.taskId);
    const file = this.#readTaskFile(sandbox);
    return (
      (typeof handle.containerId === 'string' ? handle.containerId : undefined) ?? file?.containerId ?? this.containerName(handle.taskId)
    );
  }

  async inspect(handle: TaskHandle): Promise<TaskStatus> {
    const sandbox = this.sandboxPath(handle.taskId);
    const recorded = this.#readExit(sandbox);
    if (recorded) return recorded;
    let c: ContainerInspect | undefined;
    try {
      c = await this.client.inspectContainer(this.#containerRef(handle));
    } catch (err) {
      if (err instanceof DockerUnreachableError) return { state: 'running', startedAt: this.#readTaskFile(sandbox)?.startedAt ?? 0 };
      throw err;
    }
    if (!c) return this.#gone(handle, sandbox);
    if (c.State.Running || c.State.Status === 'created') return { state: 'running', startedAt: Date.parse(c.State.StartedAt) || 0 };
    const t = this.#tracked.get(handle.taskId) ?? this.#untracked(handle.taskId, c, sandbox);
    return (await this.#settle(t, this.#tracked.has(handle.taskId))) ?? { state: 'running', startedAt: Date.parse(c.State.StartedAt) || 0 };
  }

  #untracked(taskId: string, c: ContainerInspect, sandbox: string): Tracked {
    this.#makeSandbox(sandbox);
    return { taskId, containerId: c.Id, sandbox, memoryMb: Number(c.Config.Labels?.[LABELS.memoryMb]) || 0 };
  }

  /** No container: an exit recorded meanwhile, or a task that is lost. */
  #gone(handle: TaskHandle, sandbox: string): TaskStatus {
    const recorded = this.#readExit(sandbox);
    if (recorded) return recorded;
    return {
      state: 'lost',
      message: `Container ${this.containerName(handle.taskId)} is gone from Docker host ${this.hostId} and no exit was recorded`,
    };
  }

  async recover(handle: TaskHandle): Promise<TaskStatus> {
    const sandbox = this.sandboxPath(handle.taskId);
    const recorded = this.#readExit(sandbox);
    if (recorded) {
      this.#remember(handle.taskId);
      return recorded;
    }
    let c: ContainerInspect | undefined;
    try {
      c = await this.client.inspectContainer(this.#containerRef(handle));
    } catch (err) {
      if (!(err instanceof DockerUnreachableError)) throw err;
      // Unknown, not ended: hold its resources; the event stream reconciles it when the host answers.
      const file = this.#readTaskFile(sandbox);
      const containerId = typeof handle.containerId === 'string' ? handle.containerId : file?.containerId;
      if (file && containerId) {
        this.#holdResources(handle.taskId, file.cpus, file.memoryMb, [...file.ports, ...file.literalPorts]);
        this.#track({ taskId: handle.taskId, containerId, sandbox, memoryMb: file.memoryMb });
      }
      return { state: 'running', startedAt: file?.startedAt ?? 0 };
    }
    if (!c) return this.#gone(handle, sandbox);
    // Created but never started (a crash between the two calls): the engine wanted it running.
    if (c.State.Status === 'created') await this.client.startContainer(c.Id);
    return this.#recoverContainer(handle.taskId, c, true);
  }

  async #recoverContainer(taskId: string, c: ContainerInspect, remember: boolean): Promise<TaskStatus> {
    const sandbox = this.sandboxPath(taskId);
    this.#makeSandbox(sandbox);
    const labels = c.Config.Labels ?? {};
    const memoryMb = Number(labels[LABELS.memoryMb]) || 0;
    const fresh = await this.client.inspectContainer(c.Id);
    if (fresh && (fresh.State.Running || fresh.State.Status === 'created')) {
      const ports = [...labelPorts(labels[LABELS.ports]), ...labelPorts(labels[LABELS.literalPorts])];
      this.#holdResources(taskId, Number(labels[LABELS.cpus]) || 0, memoryMb, ports);
      this.#track({ taskId, containerId: c.Id, sandbox, memoryMb });
      return { state: 'running', startedAt: Date.parse(fresh.State.StartedAt) || 0 };
    }
    const t = this.#tracked.get(taskId) ?? { taskId, containerId: c.Id, sandbox, memoryMb };
    // An exit recover() returns happened while nobody watched: it is not reported again.
    const status = await this.#settle(t, !remember);
    return status ?? this.#gone({ taskId }, sandbox);
  }

  #holdResources(taskId: string, cpus: number, memoryMb: number, ports: number[]): void {
    if (!this.#ledger.has(taskId)) this.#ledger.reserve(taskId, { cpus, memoryMb, ports });
  }

  async find(taskId: string): Promise<TaskHandle | undefined> {
    const found = await this.client.listContainers([`${LABELS.installation}=${this.#o.installationId}`, `${LABELS.task}=${taskId}`]);
    const c = found[0];
    if (c) return this.#handle(taskId, c.Id, labelPorts(c.Labels[LABELS.ports]));
    // Removed after its exit was recorded: the sandbox still knows it.
    const sandbox = this.sandboxPath(taskId);
    const file = this.#readTaskFile(sandbox);
    if (file?.containerId && this.#readExit(sandbox)) return this.#handle(taskId, file.containerId, file.ports);
    return undefined;
  }

  /** Task ids of this installation's containers on the host (running, exited or created). */
  async listTasks(): Promise<string[]> {
    const found = await this.client.listContainers([`${LABELS.installation}=${this.#o.installationId}`]);
    return found.map((c) => c.Labels[LABELS.task]).filter((id): id is string => typeof id === 'string' && id !== '');
  }

  // ---- stop ------------------------------------------------------------------------------

  stop(handle: TaskHandle, graceMs: number): Promise<void> {
    const running = this.#stops.get(handle.taskId);
    if (running) return running;
    const work = this.#stop(handle, graceMs).finally(() => this.#stops.delete(handle.taskId));
    this.#stops.set(handle.taskId, work);
    return work;
  }

  async #stop(handle: TaskHandle, graceMs: number): Promise<void> {
    const sandbox = this.sandboxPath(handle.taskId);
    const recorded = this.#readExit(sandbox);
    const ref = this.#containerRef(handle);
    if (recorded) {
      // Ended already; make sure nothing is left behind.
      await this.client.removeContainer(ref, { force: true });
      return;
    }
    const c = await this.client.inspectContainer(ref);
    if (!c || !this.#ours(c, handle.taskId)) {
      const t = this.#tracked.get(handle.taskId);
      if (t) await this.#settle(t);
      return;
    }
    const t = this.#tracked.get(handle.taskId) ?? this.#untracked(handle.taskId, c, sandbox);
    t.stopping = true;
    if (c.State.Running) {
      const signal = c.Config.StopSignal || 'SIGTERM';
      t.sent = signal;
      await this.client.killContainer(c.Id, signal);
      if (!(await this.#waitStopped(c.Id, graceMs))) {
        t.sent = 'SIGKILL';
        await this.client.killContainer(c.Id, 'SIGKILL');
        if (!(await this.#waitStopped(c.Id, this.#o.killWaitMs ?? 10_000))) {
          this.#log.error({ taskId: handle.taskId, host: this.hostId }, 'container still running after SIGKILL');
        }
      }
    } else if (c.State.Status === 'created') {
      // Never started: nothing ran, nothing to signal.
      t.sent = 'SIGKILL';
      writeJsonAtomic(path.join(sandbox, EXIT_FILE), {
        state: 'exited',
        exitCode: null,
        signal: 'SIGKILL',
        finishedAt: Date.now(),
        message: 'Stopped before it started',
      });
    }
    this.#log.info({ taskId: handle.taskId, host: this.hostId, signal: t.sent }, 'container stopped');
    await this.#settle(t);
  }

  async #waitStopped(id: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = await this.client.inspectContainer(id);
      if (!c || !c.State.Running) return true;
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(STOP_POLL_MS, Math.max(1, deadline - Date.now())));
    }
  }

  // ---- the rest ----------------------------------------------------------------------------

  async logs(handle: TaskHandle, which: 'stdout' | 'stderr', offset: number, length: number): Promise<LogChunk> {
    return readLogChunk(path.join(this.sandboxPath(handle.taskId), which), offset, length);
  }

  async release(handle: TaskHandle): Promise<void> {
    this.#ledger.release(handle.taskId);
  }

  /**
   * Task-history retention: remove the container (if any is left) and the sandbox of a task
   * that ended. A container that runs, or a host that does not answer, is left alone (the
   * latter throws, so the record stays and the next sweep tries again).
   */
  async purge(handle: TaskHandle): Promise<void> {
    const taskId = handle.taskId;
    await this.#settling.get(taskId);
    await this.#stops.get(taskId);
    const sandbox = this.sandboxPath(taskId);
    if (!this.#readExit(sandbox)) {
      const c = await this.client.inspectContainer(this.#containerRef(handle));
      if (c && (c.State.Running || c.State.Status === 'created' || c.State.Status === 'restarting')) return;
      if (c && !this.#ours(c, taskId)) return;
    }
    await this.client.removeContainer(this.#containerRef(handle), { force: true });
    const t = this.#tracked.get(taskId);
    if (t) {
      t.copier?.stop();
      this.#tracked.delete(taskId);
      await t.copying?.catch(() => undefined);
    }
    this.#ledger.release(taskId);
    rmSync(sandbox, { recursive: true, force: true });
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#eventsTimer) clearTimeout(this.#eventsTimer);
    this.#eventsTimer = undefined;
    this.#events?.destroy();
    this.#events = undefined;
    for (const t of this.#tracked.values()) t.copier?.stop();
    await Promise.allSettled([...this.#tracked.values()].map((t) => t.copying));
    this.#tracked.clear();
    this.client.close();
  }
}

/** A stopped container's State → the exit Fledge records. */
export function exitStatusOf(state: ContainerState, memoryMb: number): ExitStatus {
  const finishedAt = Date.parse(state.FinishedAt) || Date.now();
  if (state.OOMKilled) {
    return {
      state: 'exited',
      exitCode: null,
      signal: 'SIGKILL',
      finishedAt,
      message: `OOM killed: the container exceeded its memory limit${memoryMb > 0 ? ` of ${memoryMb} MB` : ''} (resources.memoryMb)`,
    };
  }
  const code = state.ExitCode;
  const signal = code > 128 ? signalNames.get(code - 128) : undefined;
  const base: ExitStatus = signal
    ? { state: 'exited', exitCode: null, signal, finishedAt }
    : { state: 'exited', exitCode: code, signal: null, finishedAt };
  return state.Error ? { ...base, message: state.Error } : base;
}

/** The last line of a sandbox file matching `pattern` (within its last 4 KB). */
function lastLine(sandbox: string, file: string, pattern: RegExp): string | undefined {
  try {
    const text = readFileSync(path.join(sandbox, file), 'utf8').slice(-4096);
    return text
      .split('\n')
      .reverse()
      .find((l) => pattern.test(l))
      ?.trim();
  } catch {
    return undefined;
  }
}

function labelPorts(text: string | undefined): number[] {
  if (!text) return [];
  return text
    .split(',')
    .map(Number)
    .filter((p) => Number.isInteger(p) && p > 0);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
