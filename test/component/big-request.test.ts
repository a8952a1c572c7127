// A request of many instances: it deploys (atomic and canary) like a small one, and a health
// result costs store work for what changed, not for the request's size — counted in store
// calls and task records written, the same at 10 and at 1,000 instances (bench/scale.ts
// --big-request times it at 10,000).
import { afterEach, describe, expect, it } from 'vitest';
import type { HealthResult } from '../../src/core/model.ts';
import type { Store } from '../../src/store/types.ts';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

/** ports for the old deploy and a canary step beside it */
const ROOMY = { hosts: [{ id: 'local', portRange: { from: 20_000, to: 29_999 } }] };
const lb = { serviceBasePath: '/svc', loadBalancerGroups: ['default'] };
const probe = (statusCode: number): HealthResult => ({ timestamp: 1_000, statusCode, durationMillis: 2, startup: false });

interface Counted {
  calls: Record<string, number>;
  tasksWritten: number;
  tasksRead: number;
  reconciled: number;
}

/** Count every store call the loop and its executor make, and the task records they move. */
function countStore(fixture: EngineFixture): { counted: Counted; reset: () => void } {
  const counted: Counted = { calls: {}, tasksWritten: 0, tasksRead: 0, reconciled: 0 };
  const store = fixture.store as unknown as Record<string, unknown>;
  for (const name of ['apply', 'getRequest', 'getDeploy', 'getDeployHistory', 'getPending', 'getTask', 'listTasks', 'listRequests']) {
    const original = (store[name] as (...a: unknown[]) => Promise<unknown>).bind(fixture.store);
    store[name] = async (...args: unknown[]) => {
      counted.calls[name] = (counted.calls[name] ?? 0) + 1;
      if (name === 'apply') counted.tasksWritten += (args[0] as Parameters<Store['apply']>[0]).tasks?.length ?? 0;
      const out = await original(...args);
      if (name === 'listTasks') counted.tasksRead += (out as unknown[]).length;
      return out;
    };
  }
  const reconcile = fixture.loop.reconcileRequest.bind(fixture.loop);
  fixture.loop.reconcileRequest = (id: string) => {
    counted.reconciled++;
    return reconcile(id);
  };
  const reset = () => {
    counted.calls = {};
    counted.tasksWritten = counted.tasksRead = counted.reconciled = 0;
  };
  return { counted, reset };
}

/** What one health result of a task of a request of `instances` costs, once it is at rest. */
async function costOfOneResult(instances: number, deliver: (f: EngineFixture, taskId: string) => Promise<unknown>) {
  f = await engineFixture(ROOMY);
  await f.activeRequest('web', instances, { request: { loadBalanced: true }, deploy: lb });
  const [task] = await f.serving('web', 'd1');
  const { counted, reset } = countStore(f);
  reset();
  await deliver(f, task!.taskId.id);
  await f.settle();
  const cost = { ...counted, calls: { ...counted.calls } };
  await f.close();
  return cost;
}

describe('a request of many instances', () => {
  it('deploys atomically, then by canary steps, to 1,000 instances', async () => {
    f = await engineFixture(ROOMY);
    await f.activeRequest('web', 1_000, { request: { loadBalanced: true }, deploy: lb });
    expect(await f.serving('web', 'd1')).toHaveLength(1_000);
    expect(await f.lbMembers('web')).toHaveLength(1_000);

    await f.deploy({ requestId: 'web', id: 'd2', ...lb, canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 250 } });
    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
    expect(await f.serving('web', 'd2')).toHaveLength(1_000);
    expect(await f.serving('web', 'd1')).toHaveLength(0);
    expect(await f.lbMembers('web')).toHaveLength(1_000);
  });

  it('a passing probe of a healthy task: one task written, no reconcile, the same at 10 and 1,000 instances', async () => {
    const pass = (fx: EngineFixture, id: string) => fx.loop.executor.onHealthResult(id, probe(200), { state: 'HEALTHY' });
    const small = await costOfOneResult(10, pass);
    const big = await costOfOneResult(1_000, pass);
    expect(big).toEqual(small);
    expect(big.tasksWritten).toBe(1);
    expect(big.reconciled).toBe(0);
    expect(big.tasksRead).toBe(0);
  });

  it('a failing one that gets its task replaced: the same store calls and task writes at 10 and 1,000 instances', async () => {
    const fail = (fx: EngineFixture, id: string) =>
      fx.loop.executor.onHealthResult(id, probe(503), { state: 'UNHEALTHY', message: 'Health check returned failure status 503' });
    const small = await costOfOneResult(10, fail);
    const big = await costOfOneResult(1_000, fail);
    expect(big.calls).toEqual(small.calls);
    expect(big.tasksWritten).toBe(small.tasksWritten);
    expect(big.reconciled).toBe(small.reconciled);
    // the unhealthy task (marked, removed from the LB, killed) and its replacement (launched, started, healthy, added)
    expect(big.tasksWritten).toBeLessThan(20);
  });
});
