import { describe, expect, it } from 'vitest';
import { buildTimeline } from './timeline-model.ts';
import type { Decision, DeployProgress } from './types.ts';

const d = (at: number, step: number, phase: Decision['phase'], action: string): Decision => ({
  at,
  step,
  phase,
  action,
  observed: 'seen',
  reason: 'why',
});

function progress(over: Partial<DeployProgress>): DeployProgress {
  return {
    phase: 'LAUNCH',
    step: 1,
    totalSteps: 2,
    targetActiveInstances: 1,
    currentActiveInstances: 0,
    stepLaunchComplete: false,
    failedDeployTasks: [],
    timestamp: 0,
    canary: true,
    stepStartedAt: 0,
    stepFailures: 0,
    retiredOldInstances: [],
    lbUpdates: [],
    stepAcceptanceResults: {},
    acceptanceResultMessageHistory: [],
    decisionLog: [],
    ...over,
  };
}

describe('buildTimeline', () => {
  it('turns "FROM → TO" decisions into phase spans; the current phase is open', () => {
    const t = buildTimeline(
      progress({
        phase: 'ACCEPTANCE',
        decisionLog: [
          d(100, 1, 'LAUNCH', 'launch #1'),
          d(110, 1, 'HEALTH', 'LAUNCH → HEALTH'),
          d(300, 1, 'LB_UPDATE', 'HEALTH → LB_UPDATE'),
          d(320, 1, 'ACCEPTANCE', 'LB_UPDATE → ACCEPTANCE'),
        ],
      }),
      100,
      true,
    );
    const [s1, s2] = t.steps;
    expect(s1?.status).toBe('current');
    expect(s1?.phases.map((p) => [p.phase, p.status, p.start, p.end])).toEqual([
      ['LAUNCH', 'done', 100, 110],
      ['HEALTH', 'done', 110, 300],
      ['LB_UPDATE', 'done', 300, 320],
      ['ACCEPTANCE', 'current', 320, undefined],
      ['ADVANCE', 'upcoming', undefined, undefined],
    ]);
    expect(s1?.phases[0]?.decisions.map((x) => x.action)).toEqual(['launch #1']);
    expect(s2?.status).toBe('upcoming');
  });

  it('marks the phase a deploy ended in as failed and records the end', () => {
    const t = buildTimeline(
      progress({
        phase: 'HEALTH',
        totalSteps: 1,
        decisionLog: [d(110, 1, 'HEALTH', 'LAUNCH → HEALTH'), d(150, 1, 'END', 'deploy FAILED')],
      }),
      100,
      false,
      'FAILED',
    );
    expect(t.steps[0]?.status).toBe('failed');
    expect(t.steps[0]?.phases[1]).toMatchObject({ phase: 'HEALTH', status: 'failed', start: 110, end: 150 });
    expect(t.end?.action).toBe('deploy FAILED');
  });
});
