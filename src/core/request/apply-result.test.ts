import { describe, expect, it } from 'vitest';
import { engineDeploy, T0, testObservation, testPending, testRecord, testRequest } from '../../../test/helpers/engine-values.ts';
import type { PendingOutcome } from '../deploy/step.ts';
import type { DeployResultState } from '../deploy/types.ts';
import type { RequestState } from '../model.ts';
import { applyDeployResult } from './apply-result.ts';

const request = testRequest(2);
const v1 = engineDeploy('v1');
const v2 = engineDeploy('v2');
const ended = (state: DeployResultState): PendingOutcome => ({
  kind: 'ENDED',
  deployId: 'v2',
  result: { deployState: state, message: state, deployFailures: [], timestamp: T0 },
  progress: testPending(v2, request).progress,
});
const backoff = { '1': { failures: 2, until: T0, lastTaskId: 'x' } };

describe('applyDeployResult', () => {
  it.each([
    {
      name: 'no deploy ended: nothing changes',
      pending: { kind: 'UNCHANGED' } as PendingOutcome,
      state: 'ACTIVE',
      active: 'v1',
      after: 'ACTIVE',
      pendingId: 'v2',
    },
    {
      name: 'SUCCEEDED: the deploy becomes active',
      pending: ended('SUCCEEDED'),
      state: 'ACTIVE',
      active: 'v2',
      after: 'ACTIVE',
      pendingId: undefined,
    },
    {
      name: 'SUCCEEDED unpauses a request deploying to unpause',
      pending: ended('SUCCEEDED'),
      state: 'DEPLOYING_TO_UNPAUSE',
      active: 'v2',
      after: 'ACTIVE',
      pendingId: undefined,
    },
    {
      name: 'FAILED: the old deploy stays active',
      pending: ended('FAILED'),
      state: 'ACTIVE',
      active: 'v1',
      after: 'ACTIVE',
      pendingId: undefined,
    },
    {
      name: 'OVERDUE: the old deploy stays active',
      pending: ended('OVERDUE'),
      state: 'ACTIVE',
      active: 'v1',
      after: 'ACTIVE',
      pendingId: undefined,
    },
    {
      name: 'CANCELED: the old deploy stays active',
      pending: ended('CANCELED'),
      state: 'ACTIVE',
      active: 'v1',
      after: 'ACTIVE',
      pendingId: undefined,
    },
    {
      name: 'FAILED while deploying to unpause: paused again',
      pending: ended('FAILED'),
      state: 'DEPLOYING_TO_UNPAUSE',
      active: 'v1',
      after: 'PAUSED',
      pendingId: undefined,
    },
  ])('$name', ({ pending, state, active, after, pendingId }) => {
    const obs = testObservation({ request, activeDeploy: v1, pendingDeploy: v2, pending: testPending(v2, request) });
    const record = testRecord(request, { state: state as RequestState, pendingDeployId: 'v2', backoff });
    const result = applyDeployResult(obs, record, pending);
    expect(result.record.activeDeployId).toBe(active);
    expect(result.activeDeploy?.id).toBe(active);
    expect(result.record.state).toBe(after);
    expect(result.record.pendingDeployId).toBe(pendingId);
    // A success ends crash-loop backoff: the new deploy starts with a clean slate.
    expect(result.record.backoff).toEqual(active === 'v2' ? undefined : backoff);
  });

  it('SUCCEEDED with an updatedRequest makes it the request', () => {
    const updated = testRequest(5);
    const obs = testObservation({
      request,
      activeDeploy: v1,
      pendingDeploy: v2,
      pending: testPending(v2, request, {}, { updatedRequest: updated }),
    });
    expect(applyDeployResult(obs, testRecord(request), ended('SUCCEEDED')).record.request).toEqual(updated);
    expect(applyDeployResult(obs, testRecord(request), ended('FAILED')).record.request).toEqual(request);
  });

  it('takes over the LB operation a deploy ended with in flight, after any already handed over', () => {
    const obs = testObservation({ request, activeDeploy: v1, pendingDeploy: v2, pending: testPending(v2, request) });
    const earlier = { operationId: 'web-v1-lb1', add: [], remove: ['a'], startedAt: T0 - 1, canceling: true };
    const handover = { operationId: 'web-v2-lb1', add: ['n'], remove: ['o'], startedAt: T0, canceling: true };
    const record = testRecord(request, { pendingDeployId: 'v2', lbHandedOver: [earlier] });
    const result = applyDeployResult(obs, record, { ...ended('CANCELED'), lbHandover: handover } as PendingOutcome);
    expect(result.record.lbHandedOver).toEqual([earlier, handover]);
    expect(applyDeployResult(obs, testRecord(request), ended('CANCELED')).record.lbHandedOver).toBeUndefined();
  });
});
