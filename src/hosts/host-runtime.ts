/*
 * The runtime the engine sees: one Runtime that routes each task to its host's runtime.
 *
 * - The engine chooses the host (core/placement.ts) and persists it in the task before asking
 *   for a start; start() only routes `spec.host` to that host's runtime (a spec without a
 *   host is a process task of a record from before placement: `local`). A host whose runtime
 *   is short of room says why, and the task waits there.
 * - The handle records the host (`host`) and the address its ports answer on (`address`); every
 *   later call (inspect, stop, logs, recover, release, purge) goes to that host's runtime. A handle
 *   without a host is the local one (handles persisted before hosts existed).
 * - find() asks the host the task was placed on, or every host for a task from before placement.
 * - staleTasks() lists what a host runs for this installation, so that a host that answers
 *   again can be rid of the tasks replaced elsewhere while it was away.
 */
import type { LogChunk, Runtime, RuntimeCapabilities, StartResult, TaskHandle, TaskSpec, TaskStatus } from '../runtimes/types.ts';
import type { HostEntry, HostRegistry } from './registry.ts';
import { LOCAL_HOST } from './types.ts';

type ExitListener = (taskId: string, status: Extract<TaskStatus, { state: 'exited' }>) => void;

export class HostRuntime implements Runtime {
  readonly #registry: HostRegistry;
  readonly #listeners: ExitListener[] = [];
  readonly #starts = new Map<string, Promise<StartResult>>();
  /** where a task was started, until it is released (start() stays idempotent) */
  readonly #placed = new Map<string, string>();

  constructor(registry: HostRegistry) {
    this.#registry = registry;
    for (const e of registry.entries()) e.runtime.onExit((taskId, status) => this.#emit(taskId, status));
  }

  capabilities(): RuntimeCapabilities {
    return { name: 'hosts', containers: this.#registry.hasDocker() };
  }

  onExit(listener: ExitListener): void {
    this.#listeners.push(listener);
  }

  #emit(taskId: string, status: Extract<TaskStatus, { state: 'exited' }>): void {
    for (const l of this.#listeners) l(taskId, status);
  }

  start(spec: TaskSpec): Promise<StartResult> {
    const running = this.#starts.get(spec.taskId);
    if (running) return running;
    const work = this.#start(spec).finally(() => this.#starts.delete(spec.taskId));
    this.#starts.set(spec.taskId, work);
    return work;
  }

  async #start(spec: TaskSpec): Promise<StartResult> {
    const id = spec.host ?? this.#placed.get(spec.taskId) ?? LOCAL_HOST;
    const e = this.#registry.entry(id);
    if (!e) return { kind: 'error', message: `Host ${id} is not configured` };
    const result = await e.runtime.start(spec);
    if (result.kind !== 'started') return result;
    this.#placed.set(spec.taskId, id);
    return { ...result, handle: { ...result.handle, host: id, address: e.definition.address } };
  }

  #route(handle: TaskHandle): HostEntry | undefined {
    const id = typeof handle.host === 'string' ? handle.host : (this.#placed.get(handle.taskId) ?? LOCAL_HOST);
    return this.#registry.entry(id);
  }

  #hostOf(handle: TaskHandle): string {
    return typeof handle.host === 'string' ? handle.host : (this.#placed.get(handle.taskId) ?? LOCAL_HOST);
  }

  async inspect(handle: TaskHandle): Promise<TaskStatus> {
    const e = this.#route(handle);
    if (!e) return { state: 'lost', message: `Host ${this.#hostOf(handle)} is not configured any more` };
    return e.runtime.inspect(handle);
  }

  async stop(handle: TaskHandle, graceMs: number): Promise<void> {
    const e = this.#route(handle);
    if (!e) return;
    await e.runtime.stop(handle, graceMs);
  }

  async recover(handle: TaskHandle): Promise<TaskStatus> {
    const e = this.#route(handle);
    if (!e) return { state: 'lost', message: `Host ${this.#hostOf(handle)} is not configured any more` };
    const status = await e.runtime.recover(handle);
    if (status.state === 'running') this.#placed.set(handle.taskId, e.definition.id);
    return status;
  }

  async find(taskId: string, host?: string): Promise<TaskHandle | undefined> {
    const placed = host === undefined ? undefined : this.#registry.entry(host);
    const entries = placed ? [placed] : this.#registry.entries();
    const found = await Promise.allSettled(entries.map((e) => e.runtime.find(taskId)));
    for (let i = 0; i < entries.length; i++) {
      const r = found[i];
      const e = entries[i]!;
      if (r?.status === 'fulfilled' && r.value) return { ...r.value, host: e.definition.id, address: e.definition.address };
    }
    return undefined;
  }

  async logs(handle: TaskHandle, path: 'stdout' | 'stderr', offset: number, length: number): Promise<LogChunk> {
    const e = this.#route(handle);
    if (!e) return { path, offset, data: '', nextOffset: offset };
    return e.runtime.logs(handle, path, offset, length);
  }

  async release(handle: TaskHandle): Promise<void> {
    const e = this.#route(handle);
    this.#placed.delete(handle.taskId);
    if (!e) return;
    await e.runtime.release(handle);
    this.#registry.noteRelease(e.definition.id);
  }

  /** A host no longer configured keeps what it had: nothing here can reach it. */
  async purge(handle: TaskHandle): Promise<void> {
    const e = this.#route(handle);
    if (!e) return;
    await e.runtime.purge(handle);
  }

  async close(): Promise<void> {
    await Promise.all(this.#registry.entries().map((e) => e.runtime.close()));
  }
}
