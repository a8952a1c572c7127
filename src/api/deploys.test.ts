import { beforeEach, describe, expect, it } from 'vitest';
import { ApiFixture, deployBody } from '../../test/helpers/api-fixture.ts';

type ErrorBody = { message: string; details: { field?: string; rule?: string }[] };

let f: ApiFixture;
beforeEach(async () => {
  f = await ApiFixture.create();
  await f.createRequest('svc');
});

const lbDeploy = (basePath: string, canary = false) => ({
  serviceBasePath: basePath,
  loadBalancerGroups: ['web'],
  canaryDeploySettings: { enableCanaryDeploy: canary, instanceGroupSize: 1 },
});

describe('POST /api/deploys input errors', () => {
  it('answers 400 "Malformed JSON" for a body that does not parse', async () => {
    const res = await f.post<ErrorBody>('/api/deploys', '{"deploy": ');
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/^Malformed JSON/);
  });

  it('names an unknown key', async () => {
    const res = await f.post<ErrorBody>('/api/deploys', deployBody('svc', 'v1', { canaryStuff: true }));
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('deploy.canaryStuff');
    expect(res.body.details).toContainEqual({ field: 'deploy.canaryStuff', rule: 'unknown field' });
  });

  it('refuses a prometheus check with no server to query, naming its url', async () => {
    await f.post('/api/requests', { id: 'svc', requestType: 'SERVICE' });
    const check = { name: 'errors', type: 'prometheus', query: 'up', max: 1 };
    const res = await f.post<ErrorBody>(
      '/api/deploys',
      deployBody('svc', 'v1', { canaryDeploySettings: { acceptanceMode: 'CHECKS' }, acceptanceChecks: [check] }),
    );
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('--prometheus-url');
    expect(res.body.details).toContainEqual({ field: 'deploy.acceptanceChecks[0].url', rule: 'required without --prometheus-url' });
    // a url of its own is refused too unless --prometheus-allow names its host
    const own = await f.post<ErrorBody>(
      '/api/deploys',
      deployBody('svc', 'v1', {
        canaryDeploySettings: { acceptanceMode: 'CHECKS' },
        acceptanceChecks: [{ ...check, url: 'http://10.1.2.3:9090' }],
      }),
    );
    expect(own.status).toBe(400);
    expect(own.body.message).toContain('10.1.2.3:9090 is not a Prometheus server this server may query');
  });

  it('refuses an lb check on a request that is not load balanced, naming the check', async () => {
    await f.post('/api/requests', { id: 'svc', requestType: 'SERVICE' });
    const res = await f.post<ErrorBody>(
      '/api/deploys',
      deployBody('svc', 'v1', {
        canaryDeploySettings: { acceptanceMode: 'CHECKS' },
        acceptanceChecks: [{ name: 'errors', type: 'lb', maxErrorRate: 0.01 }],
      }),
    );
    expect(res.status).toBe(400);
    expect(res.body.details).toContainEqual({ field: 'deploy.acceptanceChecks[0].type', rule: 'lb only on a loadBalanced request' });
  });

  it('names a missing deploy.id', async () => {
    const res = await f.post<ErrorBody>('/api/deploys', { deploy: { requestId: 'svc', command: 'x' } });
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('deploy.id');
    expect(res.body.details.map((d) => d.field)).toContain('deploy.id');
  });

  it('rejects a deploy id with a dash', async () => {
    const res = await f.post<ErrorBody>('/api/deploys', deployBody('svc', 'v-1'));
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('deploy.id');
    expect(res.body.message).toContain('[A-Za-z0-9_.]');
  });

  it('rejects a deploy id used before for the request', async () => {
    await f.seedDeploy('svc', { id: 'v1', command: 'node old.mjs' }, { at: 1 });
    const res = await f.post<ErrorBody>('/api/deploys', deployBody('svc', 'v1'));
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('v1 was already used');
    // Unchanged, but it ended (active or failed): ids are never reused.
    await f.seedDeploy('svc', { id: 'v2' }, { at: 2, state: 'FAILED' });
    expect((await f.post<ErrorBody>('/api/deploys', deployBody('svc', 'v2'))).body.message).toContain('v2 was already used');
    await f.seedDeploy('svc', { id: 'v3' }, { at: 3 });
    expect((await f.post<ErrorBody>('/api/deploys', deployBody('svc', 'v3'))).body.message).toContain('v3 was already used');
  });

  it('answers 404 for a deploy of an unknown request', async () => {
    const res = await f.post<ErrorBody>('/api/deploys', deployBody('nope', 'v1'));
    expect(res.status).toBe(404);
    expect(res.body.message).toContain('nope');
  });

  it('requires serviceBasePath when the stored request is load balanced', async () => {
    await f.createRequest('web', { loadBalanced: true });
    const res = await f.post<ErrorBody>('/api/deploys', deployBody('web', 'v1'));
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('deploy.serviceBasePath');
    expect(await f.store.listPending()).toEqual([]);
  });

  it("refuses a canary that changes the active deploy's LB settings, saying why", async () => {
    await f.createRequest('web', { loadBalanced: true });
    await f.seedDeploy('web', { id: 'v1', ...lbDeploy('/web') }, { at: 1 });
    const res = await f.post<ErrorBody>('/api/deploys', deployBody('web', 'v2', lbDeploy('/web2', true)));
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('serviceBasePath');
    expect(res.body.message).toContain('active deploy v1');
    expect(res.body.message).toContain('different routes');
  });
});

describe('trafficSteps', () => {
  const traffic = (steps: unknown, more: Record<string, unknown> = {}) =>
    deployBody('web', 'v2', {
      ...lbDeploy('/web', true),
      canaryDeploySettings: { enableCanaryDeploy: true, trafficSteps: steps, ...more },
    });
  beforeEach(async () => {
    await f.createRequest('web', { loadBalanced: true, instances: 4 });
    await f.seedDeploy('web', { id: 'v1', ...lbDeploy('/web') }, { at: 1 });
  });

  it.each([
    { steps: [5, 1], rule: /ascending/ },
    { steps: [0, 5], rule: /trafficSteps\[0\]: must be > 0/ },
    { steps: [5, 100], rule: /trafficSteps\[1\]: must be < 100/ },
    { steps: [], rule: /1|too small/i },
    { steps: Array.from({ length: 21 }, (_, i) => i + 1), rule: /20|too big/i },
  ])('refuses $steps with a 400 naming the field', async ({ steps, rule }) => {
    const res = await f.post<ErrorBody>('/api/deploys', traffic(steps));
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('deploy.canaryDeploySettings.trafficSteps');
    expect(res.body.message).toMatch(rule);
    expect(await f.store.listPending()).toEqual([]);
  });

  it('refuses a share the instances cannot carry, in the plan and the deploy, with the numbers', async () => {
    for (const path of ['/api/deploys/plan', '/api/deploys']) {
      const res = await f.post<ErrorBody>(path, traffic([10, 90]));
      expect(res.status).toBe(400);
      expect(res.body.message).toContain('deploy.canaryDeploySettings.trafficSteps[1]');
      expect(res.body.message).toMatch(
        /9\.00× an old task's load even with all 4 new instance\(s\) beside 4 old \(maxLoadPerTaskRatio 2\)/,
      );
    }
    // a higher ratio lets a smaller share through
    expect((await f.post('/api/deploys/plan', traffic([10, 60], { maxLoadPerTaskRatio: 1.5 }))).status).toBe(200);
    expect(await f.store.listPending()).toEqual([]);
  });

  it('refuses trafficSteps without a canary', async () => {
    const res = await f.post<ErrorBody>(
      '/api/deploys',
      deployBody('web', 'v2', { ...lbDeploy('/web'), canaryDeploySettings: { trafficSteps: [5] } }),
    );
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/trafficSteps: needs enableCanaryDeploy: true/);
  });

  it("plans each step's share, weights and sample, then the step to every instance", async () => {
    const res = await f.post<{
      steps: {
        trafficShare: number;
        targetActiveInstances: number;
        oldInstances: number;
        traffic?: { newWeight: number; minRequests: number };
        description: string;
      }[];
    }>('/api/deploys/plan', traffic([1, 5, 25, 50]));
    expect(res.status).toBe(200);
    expect(res.body.steps.map((s) => [s.targetActiveInstances, s.oldInstances, s.traffic?.newWeight])).toEqual([
      [1, 4, 4],
      [1, 4, 21],
      [1, 4, 133],
      [2, 4, 200],
      [4, 0, undefined],
    ]);
    expect(res.body.steps.map((s) => Math.round(s.trafficShare * 1000) / 10)).toEqual([1, 5, 25, 50, 50]);
    expect(res.body.steps[0]?.description).toMatch(/weight 4 beside 4 of v1 at 100: 1 % of requests asked/);
    expect(res.body.steps[0]?.traffic?.minRequests).toBe(4330);
  });
});

describe('POST /api/deploys state conflicts', () => {
  it('starts a pending deploy and wakes the loop for its request', async () => {
    const res = await f.post<{ pendingDeploy: { id: string } }>('/api/deploys', deployBody('svc', 'v1'));
    expect(res.status).toBe(200);
    expect(res.body.pendingDeploy.id).toBe('v1');
    expect(f.woken).toContain('svc');
  });

  it('answers a deploy posted again unchanged (a retry) with what exists, and the same id with other content 400', async () => {
    const first = await f.post<{ pendingDeploy: { id: string; timestamp: number } }>('/api/deploys', deployBody('svc', 'v1'));
    expect(first.status).toBe(200);
    const again = await f.post<{ pendingDeploy: { id: string; timestamp: number }; warnings?: string[] }>(
      '/api/deploys',
      deployBody('svc', 'v1'),
    );
    expect(again.status).toBe(200);
    expect(again.body.pendingDeploy).toEqual(first.body.pendingDeploy);
    expect(JSON.stringify(again.body)).toContain('already created with this content');
    expect(await f.store.listDeployHistory('svc')).toHaveLength(1);
    const other = await f.post<ErrorBody>('/api/deploys', deployBody('svc', 'v1', { command: 'something else' }));
    expect(other.status).toBe(409);
    expect(other.body.message).toContain('pending deploy v1');
  });

  it('answers 409 naming the pending deploy for a second one', async () => {
    expect((await f.post('/api/deploys', deployBody('svc', 'v1'))).status).toBe(200);
    const res = await f.post<ErrorBody>('/api/deploys', deployBody('svc', 'v2'));
    expect(res.status).toBe(409);
    expect(res.body.message).toContain('pending deploy v1');
  });

  it('answers 409 to an advance while the step is not waiting for approval', async () => {
    await f.post('/api/deploys', deployBody('svc', 'v1', { canaryDeploySettings: { enableCanaryDeploy: true, acceptanceMode: 'MANUAL' } }));
    const res = await f.post<ErrorBody>('/api/deploys/advance', { requestId: 'svc', deployId: 'v1' });
    expect(res.status).toBe(409);
    expect(res.body.message).toContain('not waiting for a manual approval');
  });

  it("answers 400 to an update beyond the request's instances", async () => {
    await f.post('/api/deploys', deployBody('svc', 'v1', { canaryDeploySettings: { enableCanaryDeploy: true } }));
    const res = await f.post<ErrorBody>('/api/deploys/update', { requestId: 'svc', deployId: 'v1', targetActiveInstances: 3 });
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('targetActiveInstances: must be from 1 to 2');
  });
});

describe('request and task errors', () => {
  it('answers 404 for an unknown request', async () => {
    const res = await f.call<ErrorBody>('GET', '/api/requests/request/nope');
    expect(res.status).toBe(404);
    expect(res.body.message).toContain('nope');
  });

  it('answers 404 for an unknown task', async () => {
    const res = await f.call<ErrorBody>('GET', '/api/tasks/task/svc-v1-1-1-localhost-local');
    expect(res.status).toBe(404);
    expect(res.body.message).toContain('svc-v1-1-1-localhost-local');
  });

  it('answers 400 to a scale that changes nothing', async () => {
    const res = await f.call<ErrorBody>('PUT', '/api/requests/request/svc/scale', { instances: 2 });
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('already has 2 instance(s)');
  });

  it('answers 400 naming the reason to a schedule it cannot read', async () => {
    const res = await f.post<ErrorBody>('/api/requests', { id: 'cron', requestType: 'SCHEDULED', quartzSchedule: '0 0 12 * * MON' });
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('quartzSchedule: Quartz needs ? in day-of-month or in day-of-week');
  });
});

describe('POST /api/deploys/plan', () => {
  type PlanBody = {
    steps: { step: number; targetActiveInstances: number; oldInstances: number; loadBalanced: { new: number; old: number } }[];
    etaSeconds: { min: number; max: number };
    warnings: string[];
  };

  it('plans a canary step by step and stores nothing', async () => {
    await f.createRequest('web', { loadBalanced: true, instances: 3 });
    await f.seedDeploy('web', { id: 'v1', ...lbDeploy('/web') }, { at: 1 });
    const woken = f.woken.length;
    const res = await f.post<PlanBody>(
      '/api/deploys/plan',
      deployBody('web', 'v2', { ...lbDeploy('/web', true), customExecutorCmd: '/usr/bin/executor' }),
    );
    expect(res.status).toBe(200);
    expect(res.body.steps.map((s) => [s.targetActiveInstances, s.oldInstances])).toEqual([
      [1, 2],
      [2, 1],
      [3, 0],
    ]);
    expect(res.body.steps[0]?.loadBalanced).toEqual({ new: 1, old: 3 });
    expect(res.body.etaSeconds.min).toBeLessThan(res.body.etaSeconds.max);
    expect(res.body.warnings.join()).toContain('customExecutorCmd');
    expect(await f.store.listPending()).toEqual([]);
    expect(await f.store.getDeploy('web', 'v2')).toBeUndefined();
    expect(f.woken.length).toBe(woken);
  });

  it('plans the atomic deploy the server would run instead of a canary that changes LB settings', async () => {
    f = await ApiFixture.create({ allowCanaryLbChange: true });
    await f.createRequest('web', { loadBalanced: true, instances: 3 });
    await f.seedDeploy('web', { id: 'v1', ...lbDeploy('/web') }, { at: 1 });
    const res = await f.post<PlanBody>('/api/deploys/plan', deployBody('web', 'v2', lbDeploy('/other', true)));
    expect(res.status).toBe(200);
    expect(res.body.steps).toHaveLength(1);
    expect(res.body.warnings.join()).toContain('Running without canary');
  });

  it.each([
    { name: 'malformed JSON', body: '{', status: 400, message: 'Malformed JSON' },
    { name: 'an unknown key', body: deployBody('svc', 'v2', { nope: 1 }), status: 400, message: 'deploy.nope' },
    { name: 'a missing deploy.id', body: { deploy: { requestId: 'svc', command: 'x' } }, status: 400, message: 'deploy.id' },
    { name: 'a dash in the deploy id', body: deployBody('svc', 'v-2'), status: 400, message: 'deploy.id' },
    { name: 'a reused deploy id', body: deployBody('svc', 'v1'), status: 400, message: 'already used' },
    { name: 'an unknown request', body: deployBody('nope', 'v2'), status: 404, message: 'nope' },
  ])('answers $status to $name, like a deploy', async ({ body, status, message }) => {
    await f.seedDeploy('svc', { id: 'v1', command: 'node old.mjs' }, { at: 1 });
    const plan = await f.post<ErrorBody>('/api/deploys/plan', body);
    const real = await f.post<ErrorBody>('/api/deploys', body);
    expect(plan.status).toBe(status);
    expect(plan.body.message).toContain(message);
    expect(plan.body).toEqual(real.body);
    expect(await f.store.listPending()).toEqual([]);
  });

  it('answers 409 while a deploy is pending', async () => {
    await f.post('/api/deploys', deployBody('svc', 'v1'));
    const res = await f.post<ErrorBody>('/api/deploys/plan', deployBody('svc', 'v2'));
    expect(res.status).toBe(409);
    expect(res.body.message).toContain('pending deploy v1');
  });

  it('answers the LB-settings 400 like a deploy', async () => {
    await f.createRequest('web', { loadBalanced: true });
    await f.seedDeploy('web', { id: 'v1', ...lbDeploy('/web') }, { at: 1 });
    const res = await f.post<ErrorBody>('/api/deploys/plan', deployBody('web', 'v2', lbDeploy('/web2', true)));
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('cannot change load balancer settings (serviceBasePath)');
    expect(await f.store.listPending()).toEqual([]);
  });

  it('names the server checks a CHECKS deploy will run', async () => {
    f = await ApiFixture.create({ serverChecks: ['slo'] });
    await f.createRequest('svc');
    const res = await f.post<{ steps: { acceptance: { checks: string[] } }[] }>(
      '/api/deploys/plan',
      deployBody('svc', 'v1', {
        canaryDeploySettings: { acceptanceMode: 'CHECKS' },
        acceptanceChecks: [{ name: 'smoke', type: 'command', command: 'true' }],
      }),
    );
    expect(res.status).toBe(200);
    expect(res.body.steps[0]?.acceptance.checks).toEqual(['slo', 'smoke']);
  });
});
