// Task-history retention: finished tasks past the age bound, or beyond the newest N of their
// request, are deleted with their sandboxes (logs). Recent ones (10 minutes) are always kept:
// the engine still reads them (crash-loop backoff, retries). Sandbox first, then the record, so
// a crash in between leaves a record the next sweep removes.
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../logger.ts';
import type { Runtime, TaskHandle } from '../runtimes/types.ts';
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
        const now = clock.now();
        const expired = await store.listExpiredTasks({
          doneBefore: Math.min(now - this.#o.maxAgeMillis, now - KEEP_RECENT_MILLIS),
          keepPerRequest: this.#o.keepPerRequest,
          minAgeBefore: now - KEEP_RECENT_MILLIS,
          limit: BATCH,
        });
        if (expired.length === 0) break;
        for (const t of expired) if (t.handle) await runtime.purge(t.handle as TaskHandle);
        await store.deleteTasks(expired.map((t) => t.taskId.id));
        removed += expired.length;
        if (expired.length < BATCH) break;
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
