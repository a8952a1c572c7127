import { describe, expect, it } from 'vitest';
import type { RequestRecord } from '../model.ts';
import { expireActions } from './expiring.ts';

const base: RequestRecord = {
  request: { id: 'web', requestType: 'SERVICE', instances: 5, loadBalanced: false, skipHealthchecks: true },
  state: 'ACTIVE',
  activeDeployId: 'v1',
  timestamp: 0,
};
const at = { startMillis: 1000, durationMillis: 500 };

describe('expireActions', () => {
  it.each([
    ['scale: back to revertToInstances', { scale: { ...at, revertToInstances: 2 } }, {}, { request: { ...base.request, instances: 2 } }],
    ['pause: unpaused', { pause: at }, { state: 'PAUSED' as const }, { state: 'ACTIVE' }],
    ['bounce: an unfinished bounce is given up', { bounce: at }, { bounce: { startedAt: 1000 } }, { state: 'ACTIVE' }],
    [
      'skipHealthchecks: back to the value before',
      { skipHealthchecks: { ...at, revertToSkipHealthchecks: false } },
      {},
      { request: { ...base.request, skipHealthchecks: false } },
    ],
  ])('%s at its end, and the expiry is gone', (_name, expiring, more, after) => {
    const record = { ...base, ...more, expiring } as RequestRecord;
    expect(expireActions(record, 1499)).toEqual({ wakeAt: 1500 });
    const out = expireActions(record, 1500);
    expect(out.record).toMatchObject(after);
    expect(out.record?.expiring).toBeUndefined();
    expect(out.record?.bounce).toBeUndefined();
    expect(out.wakeAt).toBeUndefined();
  });

  it('undoes only what is due and wakes for the next', () => {
    const record: RequestRecord = {
      ...base,
      expiring: {
        scale: { ...at, revertToInstances: 2 },
        skipHealthchecks: { startMillis: 1000, durationMillis: 9000, revertToSkipHealthchecks: false },
      },
    };
    const out = expireActions(record, 2000);
    expect(out.record?.request.instances).toBe(2);
    expect(out.record?.request.skipHealthchecks).toBe(true);
    expect(Object.keys(out.record?.expiring ?? {})).toEqual(['skipHealthchecks']);
    expect(out.wakeAt).toBe(10_000);
  });

  it('an expiring pause of a request no longer paused changes nothing but drops the expiry', () => {
    const out = expireActions({ ...base, expiring: { pause: at } }, 5000);
    expect(out.record).toEqual(base);
  });

  it('nothing to expire: no change', () => {
    expect(expireActions(base, 5000)).toEqual({});
  });
});
