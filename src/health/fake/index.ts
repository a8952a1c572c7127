// A scriptable health watcher for engine tests and the scale bench: no probes, no timers. Each
// watched task is answered by a policy (HEALTHY at once by default), or left for the test to
// report.
import type { HealthState } from '../../core/model.ts';
import type { HealthReport, HealthWatcher } from '../types.ts';

export type FakeHealthPolicy = (taskId: string) => HealthState | 'WAIT';

export class FakeHealth implements HealthWatcher {
  readonly watched = new Set<string>();
  policy: FakeHealthPolicy = () => 'HEALTHY';
  #report: HealthReport | undefined;
  #closed = false;

  constructor(onResult?: HealthReport) {
    this.#report = onResult;
  }

  /** Where verdicts go (the executor's onHealthResult), when it is built after this. */
  bind(report: HealthReport): void {
    this.#report = report;
  }

  watch(task: { taskId: string }): void {
    if (this.#closed) throw new Error('FakeHealth is closed');
    this.watched.add(task.taskId);
    const verdict = this.policy(task.taskId);
    if (verdict !== 'WAIT') queueMicrotask(() => this.watched.has(task.taskId) && this.report(task.taskId, verdict));
  }

  /** A verdict, as a probe run would have reached it (the test's word: watched or not). */
  report(taskId: string, state: HealthState, message?: string): void {
    const text = message ?? (state === 'UNHEALTHY' ? 'Health check returned failure status 503' : undefined);
    this.#report?.(taskId, undefined, { state, ...(text !== undefined ? { message: text } : {}) });
  }

  unwatch(taskId: string): void {
    this.watched.delete(taskId);
  }

  /** Tasks probeNow() was asked for, in order (the test answers with report()). */
  readonly probedNow: string[] = [];
  probeNow(taskId: string): void {
    if (this.watched.has(taskId)) this.probedNow.push(taskId);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.watched.clear();
  }
}
