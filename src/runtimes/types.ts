// The task runtime: where and how a task's process runs. One interface, one folder per
// implementation (process/, docker/, fake/), one contract suite (contract.case.ts).
import type { ContainerVolume, DockerInfo } from '../core/container.ts';
import type { ArtifactFetch } from '../core/launch.ts';

export interface TaskSpec {
  /** Fledge's task id string; the runtime's idempotency key */
  taskId: string;
  requestId: string;
  deployId: string;
  instanceNo: number;
  /** the host the engine placed it on (a runtime over several hosts routes by it) */
  host?: string;
  /** run through a shell */
  command?: string;
  /** argv, no shell; takes precedence over command when both are set (in a container: appended to command) */
  arguments?: string[];
  /** containers: run `command` with /bin/sh -c (else command and arguments are the container's Cmd) */
  shell?: boolean;
  /** run as a Docker container (only a Docker runtime accepts it) */
  container?: { docker: DockerInfo; volumes: ContainerVolume[] };
  /** merged env (deploy env + taskEnv entry); the runtime adds PORT*, TASK_ID... */
  env: Record<string, string>;
  numPorts: number;
  cpus: number;
  memoryMb: number;
  /** the task id's startedAt and rack (Singularity's ${TASK_STARTED_AT}, TASK_RACK_ID) */
  startedAt?: number;
  rackId?: string;
  /** the request's instances (Singularity's ESTIMATED_INSTANCE_COUNT) */
  estimatedInstanceCount?: number;
  /** fetched into the sandbox before the command starts; a failure is a start error naming the URL */
  artifacts?: ArtifactFetch[];
}

/**
 * Opaque to everything but the runtime that made it; persisted as JSON on the task. A runtime
 * that places tasks on hosts records the host's id and the address its ports answer on.
 */
export type TaskHandle = Record<string, unknown> & { taskId: string; host?: string; address?: string };

/** Where a task's ports answer (health checks, load balancer): its host's address. */
export function taskAddress(handle: Record<string, unknown> | undefined, fallback = '127.0.0.1'): string {
  const address = handle?.address;
  return typeof address === 'string' && address !== '' ? address : fallback;
}

export type StartResult =
  | { kind: 'started'; handle: TaskHandle; ports: number[] }
  /** not enough capacity now; try again later */
  | { kind: 'waiting'; reason: string }
  /** the spec can never run (bad command path, etc.) */
  | { kind: 'error'; message: string };

export type TaskStatus =
  | { state: 'running'; pid?: number; startedAt: number }
  | {
      state: 'exited';
      exitCode: number | null;
      signal: string | null;
      finishedAt: number;
      /**
       * It failed soon after start because one of its ports was taken (EADDRINUSE): another
       * process bound it between the runtime's check and the task's bind. Not the task's fault:
       * start it again, on other ports.
       */
      portInUse?: boolean;
      /** why, when the runtime knows more than the code (e.g. killed for exceeding its memory limit) */
      message?: string;
    }
  /** the runtime has no record of this task at all (e.g. sandbox deleted) */
  | { state: 'lost'; message: string };

export interface RuntimeCapabilities {
  name: string;
  containers: boolean;
}

export interface LogChunk {
  path: string;
  offset: number;
  data: string;
  /** next offset to read from */
  nextOffset: number;
  /** the file's size now, where the runtime knows it (reading its tail) */
  size?: number;
}

export interface Runtime {
  capabilities(): RuntimeCapabilities;
  /** Idempotent per spec.taskId: a second call returns the live task's handle. */
  start(spec: TaskSpec): Promise<StartResult>;
  inspect(handle: TaskHandle): Promise<TaskStatus>;
  /**
   * SIGTERM (or equivalent), then SIGKILL after graceMs. Resolves when the task is gone, after
   * its exit was reported through onExit (unless reported before). Idempotent.
   */
  stop(handle: TaskHandle, graceMs: number): Promise<void>;
  /**
   * Re-attach after a scheduler restart. Resolves with the current status; from then on
   * exits are reported through onExit like for tasks this process started. An exit that
   * recover() returns (it happened while nobody watched) is not reported again.
   */
  recover(handle: TaskHandle): Promise<TaskStatus>;
  /**
   * Find a task started before a crash whose handle was never persisted. `host`: where it was
   * placed, when known (a runtime over several hosts asks that one only).
   */
  find(taskId: string, host?: string): Promise<TaskHandle | undefined>;
  logs(handle: TaskHandle, path: 'stdout' | 'stderr', offset: number, length: number): Promise<LogChunk>;
  /** Called once per task exit (started or recovered tasks alike). */
  onExit(listener: (taskId: string, status: Extract<TaskStatus, { state: 'exited' }>) => void): void;
  /** Release resources held for a task that is gone (ports, capacity). Idempotent. */
  release(handle: TaskHandle): Promise<void>;
  /**
   * Delete what is left of a task that ended (its sandbox: logs, files): task-history
   * retention. Never touches a task that still runs. Idempotent.
   */
  purge(handle: TaskHandle): Promise<void>;
  /** Stop watching (timers, watchers). Never stops tasks: they outlive the scheduler. */
  close(): Promise<void>;
}

/**
 * The task runs on another machine than this scheduler's (process runtime): its pid means
 * nothing here, so the runtime refuses to inspect, stop or replace it rather than guess.
 */
export class ForeignTaskError extends Error {
  constructor(
    readonly taskId: string,
    readonly machine: string,
    readonly here: string,
  ) {
    super(
      `Task ${taskId} runs on machine ${machine}; this scheduler runs on ${here} and cannot manage it (the process runtime is for one machine: let a scheduler on ${machine} lead)`,
    );
    this.name = 'ForeignTaskError';
  }
}
