// Rebuilds a deploy's timeline (steps → phases with start/end) from its progress and decision
// log, reading the entries' fields, never their text: a PHASE_CHANGED entry opens the span of
// its `to` phase, the entry of phase END (kind ENDED) closes the deploy, and everything else
// is attached to the phase it was logged in. Entries stored before decisions had a kind carry
// only their phase and step: a change of those opens the span, so old logs still render.
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

const isTimelinePhase = (phase: string): phase is TimelinePhase => (TIMELINE_PHASES as readonly string[]).includes(phase);

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
  let stepNo = 1;
  if (current) {
    current.start = startedAt;
    current.status = 'current';
  }
  let endDecision: Decision | undefined;
  const decisions = [...progress.decisionLog].sort((a, b) => a.at - b.at);
  for (const d of decisions) {
    const into =
      d.kind === 'PHASE_CHANGED' ? d.to : d.kind === undefined && (d.phase !== current?.phase || d.step !== stepNo) ? d.phase : undefined;
    if (d.phase === 'END') {
      endDecision = d;
      if (current) {
        current.end = d.at;
        current.decisions.push(d);
      }
      continue;
    }
    if (into !== undefined && isTimelinePhase(into)) {
      if (current) {
        current.end = d.at;
        current.status = 'done';
      }
      stepNo = d.step;
      current = phaseOf(d.step, into);
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
