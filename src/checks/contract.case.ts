// The contract every acceptance check keeps, run against each implementation: it carries its
// spec's settings, answers SUCCEEDED where its condition holds and FAILED where it does not,
// naming why, and an aborted call ends promptly (an error or an answer, never a hang).
import { describe, expect, it } from 'vitest';
import type { AcceptanceCheckSpec, Deploy, FledgeRequest } from '../core/model.ts';
import type { Check, CheckContext } from './types.ts';

export interface CheckHarness {
  /** the spec's options (and context) under which this check passes, or fails */
  options(outcome: 'pass' | 'fail'): Promise<Record<string, unknown>>;
  create(spec: AcceptanceCheckSpec): Check;
  /** context fields this implementation reads (e.g. the balancer's traffic) */
  context?(outcome: 'pass' | 'fail'): Partial<CheckContext>;
}

export function checkContext(more: Partial<CheckContext> = {}): CheckContext {
  return {
    request: { id: 'web' } as FledgeRequest,
    deploy: { id: 'd2' } as Deploy,
    progress: { stepStartedAt: Date.now() - 120_000, stepReadyAt: Date.now() - 120_000 } as CheckContext['progress'],
    step: 1,
    taskIds: { newActive: [{ id: 'new-1' } as never], newInactive: [], otherActive: [{ id: 'old-1', deployId: 'd1' } as never] },
    deployIds: { new: 'd2', old: ['d1'] },
    now: Date.now(),
    signal: AbortSignal.timeout(5_000),
    ...more,
  };
}

/** `name` is the check type (or `fake`), as the spec would name it. */
export function checkContract(name: string, harness: () => CheckHarness): void {
  const type = name as AcceptanceCheckSpec['type'];
  describe(`acceptance check contract: ${name}`, () => {
    const spec = (options: Record<string, unknown>): AcceptanceCheckSpec => ({
      name: `my-${type}`,
      type,
      intervalSeconds: 7,
      timeoutSeconds: 9,
      failOnError: false,
      options,
    });

    it('carries its spec: name, interval, timeout, failOnError', async () => {
      const h = harness();
      const check = h.create(spec(await h.options('pass')));
      expect({ ...check, evaluate: undefined }).toMatchObject({
        name: `my-${type}`,
        intervalSeconds: 7,
        timeoutSeconds: 9,
        failOnError: false,
      });
    });

    it('answers SUCCEEDED where its condition holds, FAILED with a reason where it does not', async () => {
      const h = harness();
      const pass = await h.create(spec(await h.options('pass'))).evaluate(checkContext(h.context?.('pass')));
      expect(pass.state).toBe('SUCCEEDED');
      const fail = await h.create(spec(await h.options('fail'))).evaluate(checkContext(h.context?.('fail')));
      expect(fail.state).toBe('FAILED');
      expect(fail.message).toEqual(expect.any(String));
      expect(fail.message?.length).toBeGreaterThan(0);
    });

    it('settles when its call is aborted (an error or an answer; a hang fails the test by its timeout)', async () => {
      const h = harness();
      const check = h.create(spec(await h.options('pass')));
      const settled = await check.evaluate(checkContext({ ...h.context?.('pass'), signal: AbortSignal.abort() })).then(
        (answer) => answer.state,
        (err: unknown) => (err instanceof Error ? 'error' : 'thrown'),
      );
      expect(['SUCCEEDED', 'FAILED', 'PENDING', 'error']).toContain(settled);
    });
  });
}
