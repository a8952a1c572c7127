// Task-history retention: finished tasks past the age bound, or beyond the newest N of their
// request, are deleted with their sandboxes (logs). Recent ones (10 minutes) are always kept:
// the engine still reads them (crash-loop backoff, retries). Sandbox first, then the record, so
// a crash in between leaves a record the next sweep removes. Only the leader sweeps (server.ts
// runs it in the leader's term); `mayAct` stops a sweep the moment the lease may be gone.
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../logger.ts';
import { errorMessage } from '../core/errors.ts';
import { ForeignTaskError, type Runtime, type TaskHandle } from '../runtimes/types.ts';
import type { Store } from '../store/types.ts';

const KEEP_RECENT_MILLIS = 10 * 60_000;
const BATCH = 500;

export interface RetentionOptions {
  store: Store;
  runtime: Runtime;
  clock: Clock;
  logger: Logger;
  maxAgeMillis: number;
  keepPerRequest: number;
  intervalMillis?: number;
  /** the term's guard: false once this scheduler may no longer lead */
  mayAct?: () => boolean;
}

export class TaskRetention {
  readonly #o: RetentionOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;

  constructor(options: RetentionOptions) {
    this.#o = options;
  }

  start(): void {
    this.#timer = setInterval(() => void this.sweep(), this.#o.intervalMillis ?? 60_000);
    this.#timer.unref();
    void this.sweep();
  }

  /** One sweep (all batches); resolves with how many tasks went. */
  sweep(): Promise<number> {
    this.#running ??= this.#sweep().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #sweep(): Promise<number> {
    const { store, runtime, clock, logger } = this.#o;
    let removed = 0;
    try {
      for (;;) {
        if (this.#o.mayAct && !this.#o.mayAct()) break;
        const now = clock.now();
        const expired = await store.listExpiredTasks({
          doneBefore: Math.min(now - this.#o.maxAgeMillis, now - KEEP_RECENT_MILLIS),
          keepPerRequest: this.#o.keepPerRequest,
          minAgeBefore: now - KEEP_RECENT_MILLIS,
          limit: BATCH,
        });
        if (expired.length === 0) break;
        const gone: string[] = [];
        for (const t of expired) {
          if (this.#o.mayAct && !this.#o.mayAct()) break;
          try {
            if (t.handle) await runtime.purge(t.handle as TaskHandle);
            gone.push(t.taskId.id);
          } catch (err) {
            if (err instanceof ForeignTaskError) {
              // No scheduler here can reach it: the record goes, its sandbox stays on its machine.
              logger.warn({ taskId: t.taskId.id, machine: err.machine }, 'task history: the sandbox stays on the machine the task ran on');
              gone.push(t.taskId.id);
            } else {
              // E.g. its Docker host does not answer: the record stays for the next sweep.
              logger.warn({ taskId: t.taskId.id, err: errorMessage(err) }, 'task history: could not delete the sandbox; will retry');
            }
          }
        }
        await store.deleteTasks(gone);
        removed += gone.length;
        if (expired.length < BATCH || gone.length === 0) break;
      }
    } catch (err) {
      logger.error({ err }, 'task history retention failed');
    }
    if (removed > 0) logger.info({ removed }, 'deleted finished tasks past the task history retention');
    return removed;
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#running;
  }
}
