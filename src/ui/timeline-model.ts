// Rebuilds a deploy's timeline (steps → phases with start/end) from its progress and decision
// log. Phase changes are logged as decisions whose action reads "FROM → TO" (step.ts `enter`),
// and the end of a deploy as a decision of phase END; everything else is attached to the
// phase it was logged in.
import type { Decision, DeployProgress, LbUpdateView } from './types.ts';

export const TIMELINE_PHASES = ['LAUNCH', 'HEALTH', 'LB_UPDATE', 'ACCEPTANCE', 'ADVANCE'] as const;
export type TimelinePhase = (typeof TIMELINE_PHASES)[number];

export interface PhaseSpan {
  phase: TimelinePhase;
  /** done: left for the next phase; current: the deploy is in it now; failed: the deploy ended in it */
  status: 'done' | 'current' | 'failed' | 'ended' | 'upcoming';
  start?: number;
  end?: number;
  decisions: Decision[];
  lbUpdates: LbUpdateView[];
}

export interface StepSpan {
  step: number;
  status: 'done' | 'current' | 'failed' | 'ended' | 'upcoming';
  start?: number;
  end?: number;
  phases: PhaseSpan[];
}

export interface Timeline {
  steps: StepSpan[];
  end?: Decision;
}

const TRANSITION = /^(\w+) → (\w+)$/;

/**
 * @param startedAt when the deploy started (its step 1 LAUNCH)
 * @param pending whether the deploy is still running
 * @param resultState its result once it ended
 */
export function buildTimeline(progress: DeployProgress, startedAt: number, pending: boolean, resultState?: string): Timeline {
  const steps = new Map<number, StepSpan>();
  const stepOf = (n: number): StepSpan => {
    let s = steps.get(n);
    if (!s) {
      s = {
        step: n,
        status: 'upcoming',
        phases: TIMELINE_PHASES.map((phase) => ({ phase, status: 'upcoming', decisions: [], lbUpdates: [] })),
      };
      steps.set(n, s);
    }
    return s;
  };
  const phaseOf = (step: number, phase: string): PhaseSpan | undefined => stepOf(step).phases.find((p) => p.phase === phase);

  let current: PhaseSpan | undefined = phaseOf(1, 'LAUNCH');
  if (current) {
    current.start = startedAt;
    current.status = 'current';
  }
  let endDecision: Decision | undefined;
  const decisions = [...progress.decisionLog].sort((a, b) => a.at - b.at);
  for (const d of decisions) {
    const move = TRANSITION.exec(d.action);
    if (d.phase === 'END') {
      endDecision = d;
      if (current) {
        current.end = d.at;
        current.decisions.push(d);
      }
      continue;
    }
    if (move && (TIMELINE_PHASES as readonly string[]).includes(move[2] ?? '')) {
      if (current) {
        current.end = d.at;
        current.status = 'done';
      }
      current = phaseOf(d.step, move[2] as string);
      if (current) {
        current.start = d.at;
        current.status = 'current';
        current.decisions.push(d);
      }
      continue;
    }
    const target = phaseOf(d.step, d.phase) ?? current;
    target?.decisions.push(d);
  }
  // The decision log is bounded: a phase we never saw start still shows as the current one.
  const live = phaseOf(progress.step, progress.phase);
  if (pending && live && live !== current) {
    if (current) current.status = 'done';
    live.status = 'current';
    current = live;
  }
  if (!pending && current) {
    current.status = resultState === 'SUCCEEDED' ? 'done' : resultState === 'CANCELED' ? 'ended' : 'failed';
  }

  for (const u of [...progress.lbUpdates, ...(progress.pendingLbUpdate ? [progress.pendingLbUpdate] : [])]) {
    // An LB update belongs to the LB phase span it started in.
    let placed = false;
    for (const s of steps.values()) {
      const lb = s.phases.find((p) => p.phase === 'LB_UPDATE');
      if (lb?.start !== undefined && u.startedAt >= lb.start - 1 && (lb.end === undefined || u.startedAt <= lb.end)) {
        if (!lb.lbUpdates.some((x) => x.loadBalancerRequestId === u.loadBalancerRequestId)) lb.lbUpdates.push(u);
        placed = true;
        break;
      }
    }
    if (!placed) phaseOf(progress.step, 'LB_UPDATE')?.lbUpdates.push(u);
  }

  for (let n = 1; n <= Math.max(progress.totalSteps, progress.step); n++) stepOf(n);
  const out = [...steps.values()].sort((a, b) => a.step - b.step);
  for (const s of out) {
    const seen = s.phases.filter((p) => p.start !== undefined);
    s.start = seen[0]?.start;
    s.end = seen.length > 0 ? seen[seen.length - 1]?.end : undefined;
    if (s.phases.some((p) => p.status === 'current')) s.status = 'current';
    else if (s.phases.some((p) => p.status === 'failed')) s.status = 'failed';
    else if (s.phases.some((p) => p.status === 'ended')) s.status = 'ended';
    else if (seen.length > 0) s.status = 'done';
  }
  return { steps: out, ...(endDecision ? { end: endDecision } : {}) };
}
