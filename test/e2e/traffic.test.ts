// Proof under traffic through the builtin LB (issue "phased canary deploy engine", item 10):
// the shared phases (a) atomic, (b) canary, (c) failing canary, (d) cancelled MANUAL canary and
// (e) rollback of test/e2e/traffic-suite.ts, each with 0 failed requests and never fewer than 4
// healthy upstreams in rotation; then a (control) phase showing the membership sampler does see
// a dip, and a dead task leaving the rotation.
import { expect, it } from 'vitest';
import { INSTANCES, PHASE_TIMEOUT_MS, taskPorts, trafficSuite } from './traffic-suite.ts';

trafficSuite({
  lb: 'builtin',
  config: taskPorts(200),
  label: 'traffic',
  title: 'deploys under traffic through the builtin LB (4 instances)',
  more: (s) => {
    it('(control) the sampler does see a dip: a SIGKILLed task leaves 3 healthy upstreams until it is replaced', async () => {
      const before = await s.waitForHealthyTasks({ count: INSTANCES, exclusive: true });
      const victim = before[0]!;
      const outcome = await s.underTraffic(
        'control SIGKILL',
        async () => {
          process.kill(-victim.pgid!, 'SIGKILL');
          return s.waitForHealthyTasks({ count: INSTANCES, exclusive: true, notIds: [victim.taskId.id], timeoutMs: PHASE_TIMEOUT_MS });
        },
        null,
      );
      // Not a deploy: capacity does drop here, and the instrument must show it.
      expect(outcome.membership.minHealthy).toBe(INSTANCES - 1);
      expect(outcome.membership.atMin?.healthy).not.toContain(victim.taskId.id);
    });

    s.itDeadTaskLeavesRotation();
  },
});
