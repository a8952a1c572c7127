// The contract every health watcher keeps, run against each implementation (http/ with real
// HTTP servers, fake/ by policy): verdicts reach the report, a task no longer watched and a
// closed watcher report nothing more, probeNow of an unknown task is harmless.
import { afterEach, describe, expect, it } from 'vitest';
import type { HealthAssessment } from '../core/health.ts';
import type { HealthcheckOptions } from '../core/model.ts';
import type { HealthReport, HealthWatcher, WatchedTask } from './types.ts';
import { waitFor } from './test-servers.test-helper.ts';

export interface HealthHarness {
  create(onResult: HealthReport): HealthWatcher;
  /** a task whose checks pass, or fail with a failure status */
  task(id: string, verdict: 'HEALTHY' | 'UNHEALTHY'): Promise<{ task: WatchedTask; options: HealthcheckOptions }>;
  /** long enough for this implementation to have reported, had it been going to */
  quietMs: number;
  cleanup(): Promise<void>;
}

export function healthContract(name: string, harness: () => HealthHarness): void {
  describe(`health watcher contract: ${name}`, () => {
    let h: HealthHarness;
    const watchers: HealthWatcher[] = [];
    afterEach(async () => {
      await Promise.all(watchers.splice(0).map((w) => w.close()));
      await h?.cleanup();
    });
    function start() {
      h = harness();
      const events: { taskId: string; assessment: HealthAssessment }[] = [];
      const w = h.create((taskId, _result, assessment) => events.push({ taskId, assessment }));
      watchers.push(w);
      const verdict = (taskId: string) => events.find((e) => e.taskId === taskId && e.assessment.state !== 'UNKNOWN')?.assessment;
      return { w, events, verdict };
    }
    const quiet = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

    it('reports a passing task HEALTHY and a failing one UNHEALTHY, each under its own id', async () => {
      const { w, verdict } = start();
      const ok = await h.task('ok', 'HEALTHY');
      const bad = await h.task('bad', 'UNHEALTHY');
      w.watch(ok.task, ok.options, 30, {});
      w.watch(bad.task, bad.options, 30, {});
      await waitFor(() => verdict('ok') !== undefined && verdict('bad') !== undefined, 5_000, 'both verdicts');
      expect(verdict('ok')?.state).toBe('HEALTHY');
      expect(verdict('bad')?.state).toBe('UNHEALTHY');
    });

    it('reports nothing for a task unwatched before its verdict; once closed, refuses to watch', async () => {
      const { w, events } = start();
      const gone = await h.task('gone', 'HEALTHY');
      const pending = await h.task('pending', 'HEALTHY');
      w.watch(gone.task, gone.options, 30, {});
      w.unwatch('gone');
      w.watch(pending.task, pending.options, 30, {});
      await w.close();
      const late = await h.task('late', 'HEALTHY');
      expect(() => w.watch(late.task, late.options, 30, {})).toThrow(/closed/);
      await quiet(h.quietMs);
      expect(events.filter((e) => e.assessment.state !== 'UNKNOWN')).toEqual([]);
    });

    it('takes probeNow of a task it does not watch without reporting it', async () => {
      const { w, events } = start();
      w.probeNow('nobody');
      await quiet(h.quietMs);
      expect(events).toEqual([]);
    });
  });
}
