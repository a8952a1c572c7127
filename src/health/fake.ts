// A scriptable health watcher for engine tests: no probes, no timers. Each watched task is
// answered by a policy (HEALTHY at once by default), or left for the test to report.
import type { HealthState } from '../core/model.ts';
import type { HealthWatcher } from './types.ts';

export type FakeHealthPolicy = (taskId: string) => HealthState | 'WAIT';

export class FakeHealth implements HealthWatcher {
  readonly watched = new Set<string>();
  policy: FakeHealthPolicy = () => 'HEALTHY';
  #report: ((taskId: string, state: HealthState, message?: string) => void) | undefined;

  /** Where verdicts go (the executor's onHealthResult). */
  bind(report: (taskId: string, state: HealthState, message?: string) => void): void {
    this.#report = report;
  }

  watch(task: { taskId: string }): void {
    this.watched.add(task.taskId);
    const verdict = this.policy(task.taskId);
    if (verdict !== 'WAIT') queueMicrotask(() => this.report(task.taskId, verdict));
  }

  report(taskId: string, state: HealthState, message?: string): void {
    this.#report?.(taskId, state, message ?? (state === 'UNHEALTHY' ? 'Health check returned failure status 503' : undefined));
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
    this.watched.clear();
  }
}
