import { describe, expect, it } from 'vitest';
import { phaseInput, T0 } from '../../../../test/helpers/engine-values.ts';
import type { AcceptanceCheckSpec } from '../../model.ts';
import type { CheckResult } from '../types.ts';
import { stepAcceptance } from './acceptance.ts';

const READY = T0;
const TIMEOUT = 600_000; // acceptanceTimeoutSeconds 600
const check = (name: string, type: AcceptanceCheckSpec['type'] = 'http', intervalSeconds = 5): AcceptanceCheckSpec => ({
  name,
  type,
  intervalSeconds,
  timeoutSeconds: 5,
  failOnError: true,
  options: {},
});
const answer = (name: string, state: CheckResult['state'], message = 'msg', step = 1): CheckResult => ({
  deployId: 'v2',
  step,
  name,
  state,
  message,
  at: T0,
});
const outcome = (r: ReturnType<typeof stepAcceptance>) =>
  'to' in r ? `to ${r.to}` : 'wait' in r ? `wait until ${r.wait.until}` : `end ${r.end.state}: ${r.end.message}`;

function input(mode: 'NONE' | 'TIMED' | 'MANUAL' | 'CHECKS', over: Parameters<typeof phaseInput>[0] = {}) {
  return phaseInput({
    ...over,
    canary: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: mode, waitMillisBetweenGroups: 60_000 },
    deploy: { acceptanceTimeoutSeconds: TIMEOUT / 1000, ...over.deploy },
    progress: { phase: 'ACCEPTANCE', stepReadyAt: READY, ...over.progress },
  });
}

describe('stepAcceptance', () => {
  it.each([
    { name: 'NONE passes at once', input: input('NONE'), advance: false, outcome: 'to ADVANCE' },
    {
      name: 'TIMED waits W after the step was ready',
      input: input('TIMED', { now: READY + 59_999 }),
      advance: false,
      outcome: `wait until ${READY + 60_000}`,
    },
    { name: 'TIMED passes once W has passed', input: input('TIMED', { now: READY + 60_000 }), advance: false, outcome: 'to ADVANCE' },
    {
      name: 'MANUAL waits for a user until the acceptance timeout',
      input: input('MANUAL'),
      advance: false,
      outcome: `wait until ${READY + TIMEOUT}`,
    },
    { name: 'MANUAL passes when a user advanced', input: input('MANUAL'), advance: true, outcome: 'to ADVANCE' },
    {
      name: 'MANUAL past the acceptance timeout: FAILED, timed out',
      input: input('MANUAL', { now: READY + TIMEOUT }),
      advance: false,
      outcome: 'end FAILED: Acceptance did not pass within 600 seconds',
    },
    { name: 'CHECKS with no checks configured passes like NONE', input: input('CHECKS'), advance: false, outcome: 'to ADVANCE' },
    {
      name: 'CHECKS with no answer yet asks and waits',
      input: input('CHECKS', { deploy: { acceptanceChecks: [check('smoke')] } }),
      advance: false,
      outcome: `wait until ${READY + TIMEOUT}`,
    },
    {
      name: 'CHECKS all SUCCEEDED passes',
      input: input('CHECKS', {
        deploy: { acceptanceChecks: [check('a'), check('b')] },
        obs: { checkResults: [answer('a', 'SUCCEEDED'), answer('b', 'SUCCEEDED')] },
      }),
      advance: false,
      outcome: 'to ADVANCE',
    },
    {
      name: 'CHECKS one FAILED fails the deploy with its message',
      input: input('CHECKS', {
        deploy: { acceptanceChecks: [check('a'), check('b')] },
        obs: { checkResults: [answer('a', 'SUCCEEDED'), answer('b', 'FAILED', 'error rate 12%')] },
      }),
      advance: false,
      outcome: 'end FAILED: Acceptance check b failed: error rate 12%',
    },
    {
      name: 'CHECKS an answer of an earlier step does not count',
      input: input('CHECKS', { deploy: { acceptanceChecks: [check('a')] }, obs: { checkResults: [answer('a', 'SUCCEEDED', 'ok', 0)] } }),
      advance: false,
      outcome: `wait until ${READY + TIMEOUT}`,
    },
    {
      name: 'CHECKS PENDING past the acceptance timeout: FAILED, timed out, with the pending answer',
      input: input('CHECKS', {
        now: READY + TIMEOUT,
        deploy: { acceptanceChecks: [check('a')] },
        obs: { checkResults: [answer('a', 'PENDING', 'too few requests')] },
      }),
      advance: false,
      outcome: 'end FAILED: Acceptance did not pass within 600 seconds; last: (a - PENDING) too few requests',
    },
    {
      name: 'CHECKS a manual check waits for an advance, then passes',
      input: input('CHECKS', { deploy: { acceptanceChecks: [check('approve', 'manual')] } }),
      advance: true,
      outcome: 'to ADVANCE',
    },
  ])('$name', ({ input, advance, outcome: expected }) => {
    expect(outcome(stepAcceptance(input, advance))).toBe(expected);
  });

  it('asks the checks not yet final again after the shortest interval, server hooks included', () => {
    const base = input('CHECKS', {
      deploy: { acceptanceChecks: [check('a', 'http', 10), check('b', 'http', 3)] },
      obs: { checkResults: [answer('a', 'SUCCEEDED')] },
    });
    const result = stepAcceptance({ ...base, obs: { ...base.obs, settings: { ...base.obs.settings, serverChecks: ['hook'] } } }, false);
    expect(result.actions).toEqual([{ kind: 'runChecks', deployId: 'v2', step: 1, names: ['hook', 'b'] }]);
    expect(result.wakeAt).toBe(T0 + 3000);
  });

  it('records each new answer once, as a line and an ACCEPTANCE_RESULT decision', () => {
    const first = stepAcceptance(
      input('CHECKS', { deploy: { acceptanceChecks: [check('a')] }, obs: { checkResults: [answer('a', 'PENDING', 'warming up')] } }),
      false,
    );
    expect(first.progress.acceptanceResultMessageHistory).toEqual(['(a - PENDING) warming up']);
    expect(first.decisions).toMatchObject([{ kind: 'ACCEPTANCE_RESULT', check: 'a', state: 'PENDING' }]);
    const again = stepAcceptance(
      input('CHECKS', {
        deploy: { acceptanceChecks: [check('a')] },
        obs: { checkResults: [answer('a', 'PENDING', 'warming up')] },
        progress: first.progress,
      }),
      false,
    );
    expect(again.progress.acceptanceResultMessageHistory).toEqual(['(a - PENDING) warming up']);
    expect(again.decisions).toEqual([]);
  });

  it('takes the step as ready now when it has no ready time', () => {
    const result = stepAcceptance(input('MANUAL', { now: T0 + 5, progress: { stepReadyAt: undefined } }), false);
    expect(result.progress.stepReadyAt).toBe(T0 + 5);
  });
});
