import { describe, expect, it } from 'vitest';
import { buildTimeline } from './timeline-model.ts';
import type { Decision, DeployProgress } from './types.ts';

const counts = { wanted: 1, accepted: 0, newHealthy: 0, newInLb: 0, oldHealthy: 1, oldInLb: 1 };
type Phase = Exclude<Decision['phase'], 'END'>;
const text = (at: number, step: number, phase: Decision['phase'], action: string) => ({
  at,
  step,
  phase,
  action,
  observed: 'seen',
  reason: 'why',
});
/** What the engine writes: entries with fields (the text is never read). */
const moved = (at: number, step: number, from: Phase, to: Phase): Decision => ({
  ...text(at, step, to, 'reworded freely'),
  kind: 'PHASE_CHANGED',
  from,
  to,
  counts,
});
const launched = (at: number): Decision => ({ ...text(at, 1, 'LAUNCH', 'launch #1'), kind: 'TASKS_LAUNCHED', taskIds: ['t1'], counts });
const ended = (at: number, from: Phase): Decision => ({
  ...text(at, 1, 'END', 'deploy FAILED'),
  kind: 'ENDED',
  from,
  state: 'FAILED',
  counts,
});
/** What logs stored before decisions had fields hold: the text alone. */
const legacy = (at: number, step: number, phase: Decision['phase'], action: string): Decision => text(at, step, phase, action);

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
  it.each([
    {
      name: 'PHASE_CHANGED entries open phase spans; the current phase is open',
      log: [
        launched(100),
        moved(110, 1, 'LAUNCH', 'HEALTH'),
        moved(300, 1, 'HEALTH', 'LB_UPDATE'),
        moved(320, 1, 'LB_UPDATE', 'ACCEPTANCE'),
      ],
    },
    {
      name: 'a log stored before decisions had fields renders from its phases and steps',
      log: [
        legacy(100, 1, 'LAUNCH', 'launch #1'),
        legacy(110, 1, 'HEALTH', 'LAUNCH → HEALTH'),
        legacy(300, 1, 'LB_UPDATE', 'HEALTH → LB_UPDATE'),
        legacy(320, 1, 'ACCEPTANCE', 'LB_UPDATE → ACCEPTANCE'),
      ],
    },
  ])('$name', ({ log }) => {
    const t = buildTimeline(progress({ phase: 'ACCEPTANCE', decisionLog: log }), 100, true);
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
        decisionLog: [moved(110, 1, 'LAUNCH', 'HEALTH'), ended(150, 'HEALTH')],
      }),
      100,
      false,
      'FAILED',
    );
    expect(t.steps[0]?.status).toBe('failed');
    expect(t.steps[0]?.phases[1]).toMatchObject({ phase: 'HEALTH', status: 'failed', start: 110, end: 150 });
    expect(t.end).toMatchObject({ kind: 'ENDED', state: 'FAILED' });
  });

  it('a PHASE_CHANGED into the next step opens that step; entries in it attach to it', () => {
    const t = buildTimeline(
      progress({
        phase: 'LAUNCH',
        step: 2,
        decisionLog: [
          moved(110, 1, 'LAUNCH', 'HEALTH'),
          moved(120, 1, 'HEALTH', 'ACCEPTANCE'),
          moved(130, 1, 'ACCEPTANCE', 'ADVANCE'),
          moved(131, 2, 'ADVANCE', 'LAUNCH'),
        ],
      }),
      100,
      true,
    );
    expect(t.steps.map((s) => s.status)).toEqual(['done', 'current']);
    expect(t.steps[1]?.phases[0]).toMatchObject({ phase: 'LAUNCH', status: 'current', start: 131 });
  });
});
