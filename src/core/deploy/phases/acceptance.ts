import { reasons } from '../reasons.ts';
import type { DeployStepContext } from '../step.ts';
import type { AcceptanceState } from '../types.ts';

/**
 * ACCEPTANCE: NONE passes; TIMED waits; CHECKS asks every check until all SUCCEEDED;
 * MANUAL waits for an advance. CHECKS and MANUAL are bounded by acceptanceTimeoutSeconds.
 */
export function stepAcceptance(ctx: DeployStepContext, advance: boolean): boolean {
  const { progress, plan, deploy } = ctx;
  const mode = deploy.canaryDeploySettings.acceptanceMode;
  const readyAt = (progress.stepReadyAt ??= plan.now);
  switch (mode) {
    case 'NONE':
      return pass(ctx, 'acceptance NONE');
    case 'TIMED': {
      const until = readyAt + deploy.canaryDeploySettings.waitMillisBetweenGroups;
      if (plan.now < until) {
        progress.deadline = until;
        plan.wake(until);
        return false;
      }
      return pass(ctx, `waited ${deploy.canaryDeploySettings.waitMillisBetweenGroups} ms after the step was ready`);
    }
    case 'MANUAL':
      if (advance) return pass(ctx, 'advanced by a user');
      return waitBounded(ctx, readyAt);
    case 'CHECKS':
      return stepChecks(ctx, advance, readyAt);
  }
}

function stepChecks(ctx: DeployStepContext, advance: boolean, readyAt: number): boolean {
  const { progress, plan, deploy, obs } = ctx;
  const declared = deploy.acceptanceChecks;
  const names = [...obs.settings.serverChecks, ...declared.map((c) => c.name)];
  if (names.length === 0) return pass(ctx, 'acceptance CHECKS with no checks configured');

  const results = progress.stepAcceptanceResults;
  for (const name of names) {
    const spec = declared.find((c) => c.name === name);
    if (spec?.type === 'manual') {
      if (advance && results[name] !== 'SUCCEEDED') record(ctx, name, 'SUCCEEDED', 'approved');
      continue;
    }
    if (results[name] === 'SUCCEEDED' || results[name] === 'FAILED') continue;
    const answer = obs.checkResults.find((r) => r.deployId === deploy.id && r.step === progress.step && r.name === name);
    if (answer && (answer.state !== results[name] || answer.state !== 'PENDING' || !results[name])) {
      record(ctx, name, answer.state, answer.message);
    }
  }
  const failed = names.find((n) => results[n] === 'FAILED');
  if (failed) {
    const message = lastMessage(ctx, failed);
    ctx.end('FAILED', reasons.acceptanceFailed(failed, message), [
      { reason: 'ACCEPTANCE_CHECK_FAILED', message: reasons.acceptanceFailed(failed, message) },
    ]);
    return false;
  }
  if (names.every((n) => results[n] === 'SUCCEEDED')) return pass(ctx, `${names.length} check(s) succeeded`);

  const toAsk = names.filter((n) => results[n] !== 'SUCCEEDED' && declared.find((c) => c.name === n)?.type !== 'manual');
  if (toAsk.length > 0) {
    plan.act({ kind: 'runChecks', deployId: deploy.id, step: progress.step, names: toAsk });
    // PENDING checks are asked again after their interval.
    const interval = Math.min(
      ...toAsk.map((n) => declared.find((c) => c.name === n)?.intervalSeconds ?? obs.settings.serverCheckIntervalSeconds),
    );
    plan.wake(plan.now + interval * 1000);
  }
  return waitBounded(ctx, readyAt);
}

function record(ctx: DeployStepContext, name: string, state: AcceptanceState, message: string): void {
  const { progress } = ctx;
  const line = `(${name} - ${state}) ${message}`;
  // A PENDING check asked again with the same answer adds no line.
  if (progress.stepAcceptanceResults[name] === state && progress.acceptanceResultMessageHistory.at(-1) === line) return;
  progress.stepAcceptanceResults[name] = state;
  progress.acceptanceResultMessageHistory.push(line);
  ctx.log(line, `check ${name} ${state}`, 'acceptance check answered');
}

function lastMessage(ctx: DeployStepContext, name: string): string {
  const prefix = `(${name} - FAILED) `;
  const line = [...ctx.progress.acceptanceResultMessageHistory].reverse().find((l) => l.startsWith(prefix));
  return line ? line.slice(prefix.length) : 'failed';
}

function waitBounded(ctx: DeployStepContext, readyAt: number): boolean {
  const { progress, plan, deploy } = ctx;
  const deadline = readyAt + deploy.acceptanceTimeoutSeconds * 1000;
  progress.deadline = deadline;
  if (plan.now >= deadline) {
    const message = reasons.acceptanceTimedOut(deploy.acceptanceTimeoutSeconds);
    ctx.end('FAILED', message, [{ reason: 'ACCEPTANCE_TIMED_OUT', message }]);
    return false;
  }
  plan.wake(deadline);
  return false;
}

function pass(ctx: DeployStepContext, why: string): boolean {
  ctx.enter('ADVANCE', why, 'acceptance passed');
  return true;
}
