import { assertNever } from '../../errors.ts';
import { reasons } from '../reasons.ts';
import type { Action, AcceptanceState, DeployProgress } from '../types.ts';
import type { DecisionDraft, PhaseEffects, PhaseInput, PhaseResult } from '../phase.ts';
import { currentTrafficStep, judgeShare } from '../traffic.ts';

/**
 * ACCEPTANCE: NONE passes; TIMED waits; CHECKS asks every check until all SUCCEEDED;
 * MANUAL waits for an advance. CHECKS and MANUAL are bounded by acceptanceTimeoutSeconds.
 * `advance`: a user approved the step in this pass; a deploys/update to every instance approved
 * the last step beforehand (progress.approvedStep), which counts the same.
 */
export function stepAcceptance(input: PhaseInput, advanced: boolean): PhaseResult {
  const gate = trafficTruth(input);
  if ('result' in gate) return gate.result;
  const rest = acceptByMode({ ...input, progress: gate.progress }, advanced);
  const judged = gate.decisions.length > 0 ? { ...rest, decisions: [...gate.decisions, ...(rest.decisions ?? [])] } : rest;
  // While a traffic step waits for its acceptance, its share is judged again every second.
  if (currentTrafficStep(input.progress) && 'wait' in judged) {
    return { ...judged, wakeAt: Math.min(judged.wakeAt ?? Infinity, input.now + 1000) };
  }
  return judged;
}

/** The name the traffic-share verdict carries in the decision log and the acceptance messages. */
export const TRAFFIC_CHECK = 'traffic share';

/**
 * Traffic truth: a traffic step passes acceptance only once the balancer's counters show the
 * new deploy got the step's share (traffic.ts judgeShare); it is judged again on every pass,
 * so a weight changed afterwards fails the step too. Too few requests: wait, bounded by the
 * acceptance timeout. A share outside the tolerance fails the deploy.
 */
function trafficTruth(input: PhaseInput): { progress: DeployProgress; decisions: DecisionDraft[] } | { result: PhaseResult } {
  const { now, obs, pending } = input;
  const step = currentTrafficStep(input.progress);
  const traffic = input.progress.traffic;
  if (!step || !traffic) return { progress: input.progress, decisions: [] };
  const readyAt = input.progress.stepReadyAt ?? now;
  const seen =
    obs.traffic?.deployId === pending.deployId && traffic.since !== undefined && obs.traffic.from >= traffic.since
      ? obs.traffic
      : undefined;
  const verdict = judgeShare(seen?.newRequests ?? 0, seen?.requests ?? 0, step.share);
  const line = `(${TRAFFIC_CHECK} - ${verdict.state}) ${verdict.message}`;
  const decisions: DecisionDraft[] = [];
  let progress: DeployProgress = { ...input.progress, stepReadyAt: readyAt };
  // PENDING is logged once per step, not at every count.
  const last = traffic.verdict;
  if (!last || last.state !== verdict.state || (verdict.state !== 'PENDING' && last.message !== verdict.message)) {
    progress = {
      ...progress,
      traffic: { ...traffic, verdict: { state: verdict.state, message: verdict.message } },
      acceptanceResultMessageHistory: [...progress.acceptanceResultMessageHistory, line],
    };
    decisions.push({
      kind: 'ACCEPTANCE_RESULT',
      check: TRAFFIC_CHECK,
      state: verdict.state,
      observed: verdict.message,
      action: `check ${TRAFFIC_CHECK} ${verdict.state}`,
      reason: `the balancer's counters since the step's weights were applied (${step.percent} % asked, weights give ${(step.share * 100).toPrecision(3)} %)`,
    });
  }
  if (verdict.state === 'FAILED') {
    const message = reasons.acceptanceFailed(TRAFFIC_CHECK, verdict.message);
    return {
      result: { progress, decisions, end: { state: 'FAILED', message, failures: [{ reason: 'ACCEPTANCE_CHECK_FAILED', message }] } },
    };
  }
  if (verdict.state === 'PENDING') {
    return { result: waitBounded(input, { progress, decisions, wakeAt: now + 1000 }, readyAt, `counting requests: ${verdict.message}`) };
  }
  return { progress, decisions };
}

function acceptByMode(input: PhaseInput, advanced: boolean): PhaseResult {
  const { now, deploy } = input;
  const advance = advanced || (input.progress.approvedStep !== undefined && input.progress.approvedStep === input.progress.step);
  const readyAt = input.progress.stepReadyAt ?? now;
  const progress = { ...input.progress, stepReadyAt: readyAt };
  const settings = deploy.canaryDeploySettings;
  const mode = settings.acceptanceMode;
  switch (mode) {
    case 'NONE':
      return pass({ progress }, 'acceptance NONE');
    case 'TIMED': {
      const until = readyAt + settings.waitMillisBetweenGroups;
      if (now < until) return { progress: { ...progress, deadline: until }, wait: { why: 'TIMED acceptance', until } };
      return pass({ progress }, `waited ${settings.waitMillisBetweenGroups} ms after the step was ready`);
    }
    case 'MANUAL':
      if (advance)
        return pass({ progress }, advanced ? 'advanced by a user' : 'approved by the deploy update that moved to every instance');
      return waitBounded(input, { progress }, readyAt, 'waiting for a user to advance or reject');
    case 'CHECKS':
      return stepChecks(input, progress, advance, readyAt);
    default:
      return assertNever(mode);
  }
}

function stepChecks(input: PhaseInput, start: DeployProgress, advance: boolean, readyAt: number): PhaseResult {
  const { now, deploy, obs } = input;
  const declared = deploy.acceptanceChecks;
  const names = [...obs.settings.serverChecks, ...declared.map((c) => c.name)];
  if (names.length === 0) return pass({ progress: start }, 'acceptance CHECKS with no checks configured');

  const results = { ...start.stepAcceptanceResults };
  const history = [...start.acceptanceResultMessageHistory];
  const decisions: DecisionDraft[] = [];
  const record = (name: string, state: AcceptanceState, message: string) => {
    const line = `(${name} - ${state}) ${message}`;
    // A PENDING check asked again with the same answer adds no line.
    if (results[name] === state && history.at(-1) === line) return;
    results[name] = state;
    history.push(line);
    decisions.push({
      kind: 'ACCEPTANCE_RESULT',
      check: name,
      state,
      observed: line,
      action: `check ${name} ${state}`,
      reason: 'acceptance check answered',
    });
  };
  for (const name of names) {
    const spec = declared.find((c) => c.name === name);
    if (spec?.type === 'manual') {
      if (advance && results[name] !== 'SUCCEEDED') record(name, 'SUCCEEDED', 'approved');
      continue;
    }
    if (results[name] === 'SUCCEEDED' || results[name] === 'FAILED') continue;
    const answer = obs.checkResults.find((r) => r.deployId === deploy.id && r.step === start.step && r.name === name);
    if (answer && (answer.state !== results[name] || answer.state !== 'PENDING' || !results[name])) {
      record(name, answer.state, answer.message);
    }
  }
  const progress = { ...start, stepAcceptanceResults: results, acceptanceResultMessageHistory: history };

  const failed = names.find((n) => results[n] === 'FAILED');
  if (failed) {
    const prefix = `(${failed} - FAILED) `;
    const line = [...history].reverse().find((l) => l.startsWith(prefix));
    const message = reasons.acceptanceFailed(failed, line ? line.slice(prefix.length) : 'failed');
    return { progress, decisions, end: { state: 'FAILED', message, failures: [{ reason: 'ACCEPTANCE_CHECK_FAILED', message }] } };
  }
  if (names.every((n) => results[n] === 'SUCCEEDED')) return pass({ progress, decisions }, `${names.length} check(s) succeeded`);

  const toAsk = names.filter((n) => results[n] !== 'SUCCEEDED' && declared.find((c) => c.name === n)?.type !== 'manual');
  if (toAsk.length === 0) return waitBounded(input, { progress, decisions }, readyAt, 'waiting for a manual check to be approved');
  const actions: Action[] = [{ kind: 'runChecks', deployId: deploy.id, step: start.step, names: toAsk }];
  // PENDING checks are asked again after their interval.
  const interval = Math.min(
    ...toAsk.map((n) => declared.find((c) => c.name === n)?.intervalSeconds ?? obs.settings.serverCheckIntervalSeconds),
  );
  // On the timeout, the last answer of each check still PENDING says why (e.g. too few requests).
  const pendingLines = toAsk.flatMap((n) => {
    const line = results[n] === 'PENDING' ? [...history].reverse().find((l) => l.startsWith(`(${n} - PENDING) `)) : undefined;
    return line ? [line] : [];
  });
  return waitBounded(
    input,
    { progress, decisions, actions, wakeAt: now + interval * 1000 },
    readyAt,
    `asking ${toAsk.join(', ')}`,
    pendingLines,
  );
}

/** Wait for acceptance until acceptanceTimeoutSeconds after the step was ready; then fail. */
function waitBounded(input: PhaseInput, effects: PhaseEffects, readyAt: number, why: string, pending: string[] = []): PhaseResult {
  const { now, deploy } = input;
  const deadline = readyAt + deploy.acceptanceTimeoutSeconds * 1000;
  const progress = { ...effects.progress, deadline };
  if (now >= deadline) {
    const timedOut = reasons.acceptanceTimedOut(deploy.acceptanceTimeoutSeconds);
    const message = pending.length > 0 ? `${timedOut}; last: ${pending.join('; ')}` : timedOut;
    return { ...effects, progress, end: { state: 'FAILED', message, failures: [{ reason: 'ACCEPTANCE_TIMED_OUT', message }] } };
  }
  return { ...effects, progress, wait: { why, until: deadline } };
}

function pass(effects: PhaseEffects, why: string): PhaseResult {
  return { ...effects, to: 'ADVANCE', observed: why, reason: 'acceptance passed' };
}
