// Singularity's expiring actions (a scale, pause, bounce or skipHealthchecks with
// durationMillis): once the time is up the change is undone, in the request step, before
// anything reads the request. Pure: the record goes in, the reverted record comes out, and
// the earliest remaining expiry is the step's wake time.
import { EXPIRING_KINDS, type ExpiringActions, type RequestRecord } from '../model.ts';
import type { RequestChanges } from './context.ts';

const endOf = (a: { startMillis: number; durationMillis: number }) => a.startMillis + a.durationMillis;

export function expireActions(record: RequestRecord, now: number): RequestChanges {
  const expiring = record.expiring;
  if (!expiring) return {};
  let rec: RequestRecord = record;
  const left: ExpiringActions = { ...expiring };
  let wakeAt: number | undefined;
  for (const kind of EXPIRING_KINDS) {
    const action = expiring[kind];
    if (!action) continue;
    if (now < endOf(action)) {
      wakeAt = wakeAt === undefined ? endOf(action) : Math.min(wakeAt, endOf(action));
      continue;
    }
    delete left[kind];
    switch (kind) {
      case 'scale': {
        const { revertToInstances, bounce } = expiring.scale!;
        rec = { ...rec, request: { ...rec.request, instances: revertToInstances } };
        if (bounce && rec.state === 'ACTIVE' && rec.activeDeployId)
          rec = { ...rec, bounce: { startedAt: now, message: 'expiring scale reverted' } };
        break;
      }
      case 'pause':
        if (rec.state === 'PAUSED') {
          rec = { ...rec, state: 'ACTIVE' };
          delete rec.backoff;
        }
        break;
      case 'bounce':
        if (rec.bounce) {
          rec = { ...rec };
          delete rec.bounce;
        }
        break;
      case 'skipHealthchecks':
        rec = { ...rec, request: { ...rec.request, skipHealthchecks: expiring.skipHealthchecks!.revertToSkipHealthchecks } };
        break;
    }
  }
  if (rec === record && Object.keys(left).length === Object.keys(expiring).length) return wakeAt !== undefined ? { wakeAt } : {};
  rec = { ...rec };
  if (Object.keys(left).length > 0) rec.expiring = left;
  else delete rec.expiring;
  return { record: rec, ...(wakeAt !== undefined ? { wakeAt } : {}) };
}
