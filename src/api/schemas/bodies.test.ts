import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { parseInput, schemas, toJsonSchema } from './index.ts';

const deploy = { requestId: 'web', id: 'v1', command: './run.sh' };

describe('action bodies', () => {
  it.each([
    ['scale', schemas.scale, { instances: 3, message: 'more' }, { instances: 3, message: 'more' }],
    ['pause', schemas.pause, { killTasks: true }, { killTasks: true }],
    ['pause (empty)', schemas.pause, {}, {}],
    ['unpause', schemas.unpause, { message: 'go' }, { message: 'go' }],
    ['bounce', schemas.bounce, { incremental: true, message: 'roll' }, { incremental: true, message: 'roll' }],
    ['delete', schemas.deleteRequest, { message: 'bye', deleteFromLoadBalancer: true }, { message: 'bye', deleteFromLoadBalancer: true }],
    [
      'deploys/update',
      schemas.updateDeploy,
      { requestId: 'web', deployId: 'v1', targetActiveInstances: 2 },
      { requestId: 'web', deployId: 'v1', targetActiveInstances: 2 },
    ],
    [
      'advance/reject',
      schemas.deployDecision,
      { requestId: 'web', deployId: 'v1', message: 'lgtm' },
      { requestId: 'web', deployId: 'v1', message: 'lgtm' },
    ],
    ['rollback', schemas.rollback, { message: 'oops' }, { message: 'oops' }],
    ['task kill', schemas.killTask, { message: 'stuck', waitForReplacementTask: true }, { message: 'stuck', waitForReplacementTask: true }],
    ['run', schemas.run, { commandLineArgs: ['--once'] }, { commandLineArgs: ['--once'] }],
    ['null means absent', schemas.scale, { instances: 2, message: null }, { instances: 2 }],
  ] as [string, z.ZodType, unknown, unknown][])('%s accepts a valid body', (_name, schema, body, value) => {
    expect(parseInput(schema, body)).toEqual({ ok: true, value, warnings: [] });
  });

  it.each([
    ['scale without instances', schemas.scale, {}, 'instances', 'is required', 'Invalid scale body: instances: is required'],
    ['scale to 0', schemas.scale, { instances: 0 }, 'instances', 'must be > 0', 'Invalid scale body: instances: must be > 0'],
    [
      'pause killTasks as string',
      schemas.pause,
      { killTasks: 'yes' },
      'killTasks',
      'must be a boolean (got string)',
      'Invalid pause body: killTasks: must be a boolean (got string)',
    ],
    [
      'bounce with unknown field',
      schemas.bounce,
      { incremental: true, fast: true },
      'fast',
      'unknown field',
      'Invalid bounce body: Unknown field(s): fast',
    ],
    [
      'delete message as an object',
      schemas.deleteRequest,
      { message: { text: 'x' } },
      'message',
      'must be a string (got object)',
      'Invalid delete body: message: must be a string (got object)',
    ],
    [
      'update without target',
      schemas.updateDeploy,
      { requestId: 'web', deployId: 'v1' },
      'targetActiveInstances',
      'is required',
      'Invalid deploy update body: targetActiveInstances: is required',
    ],
    [
      'update with bad deployId',
      schemas.updateDeploy,
      { requestId: 'web', deployId: 'v-1', targetActiveInstances: 1 },
      'deployId',
      'must be 1-50 characters of [A-Za-z0-9_.]',
      'Invalid deploy update body: deployId: must be 1-50 characters of [A-Za-z0-9_.]',
    ],
    [
      'advance without deployId',
      schemas.deployDecision,
      { requestId: 'web' },
      'deployId',
      'is required',
      'Invalid deploy decision body: deployId: is required',
    ],
    [
      'rollback with unknown field',
      schemas.rollback,
      { target: 'v0' },
      'target',
      'unknown field',
      'Invalid rollback body: Unknown field(s): target',
    ],
    [
      'task kill waitForReplacementTask as a word',
      schemas.killTask,
      { waitForReplacementTask: 'yes' },
      'waitForReplacementTask',
      'must be a boolean (got string)',
      'Invalid task kill body: waitForReplacementTask: must be a boolean (got string)',
    ],
  ] as [string, z.ZodType, unknown, string, string, string][])('%s → 400', (_name, schema, body, field, rule, message) => {
    expect(parseInput(schema, body)).toEqual({ ok: false, message, details: [{ field, rule }] });
  });

  it.each([
    ['scale', schemas.scale, { instances: 2, incremental: true, actionId: 'x' }, ['actionId', 'incremental']],
    ['pause', schemas.pause, { runShellCommandBeforeKill: { name: 'dump' } }, ['runShellCommandBeforeKill']],
    ['task kill', schemas.killTask, { override: true }, ['override']],
  ] as [string, z.ZodType, Record<string, unknown>, string[]][])(
    '%s keeps Singularity-only fields in extra with warnings',
    (_name, schema, body, ignored) => {
      const r = parseInput(schema, body);
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect((r.value as { extra?: unknown }).extra).toEqual(Object.fromEntries(ignored.map((k) => [k, body[k]])));
      expect(r.warnings.map((w) => w.split(':')[0])).toEqual(ignored);
    },
  );
});

describe('POST /api/deploys body', () => {
  const parse = (body: unknown) => parseInput(schemas.deployRequest(false), body);

  it('accepts deploy, message, unpauseOnSuccessfulDeploy and updatedRequest', () => {
    const r = parse({
      deploy: { ...deploy, customExecutorCmd: '/usr/bin/executor' },
      message: 'ship it',
      unpauseOnSuccessfulDeploy: true,
      updatedRequest: { id: 'web', requestType: 'SERVICE', instances: 3, rackSensitive: false, taskPriorityLevel: 0.5 },
    });
    expect(r).toMatchObject({
      ok: true,
      value: {
        deploy: { id: 'v1' },
        message: 'ship it',
        unpauseOnSuccessfulDeploy: true,
        updatedRequest: { id: 'web', instances: 3, rackSensitive: false, extra: { taskPriorityLevel: 0.5 } },
      },
    });
    expect(r.ok && r.warnings.map((w) => w.split(':')[0])).toEqual(['deploy.customExecutorCmd', 'updatedRequest.taskPriorityLevel']);
  });

  it.each([
    ['no deploy', {}, 'deploy', 'is required'],
    ['deploy not an object', { deploy: 'v1' }, 'deploy', 'must be an object (got string)'],
    ['deploy id with -', { deploy: { ...deploy, id: 'v-1' } }, 'deploy.id', 'must be 1-50 characters of [A-Za-z0-9_.]'],
    ['unknown body field', { deploy, force: true }, 'force', 'unknown field'],
    ['unknown deploy field', { deploy: { ...deploy, foo: 1 } }, 'deploy.foo', 'unknown field'],
    [
      'updatedRequest for another request',
      { deploy, updatedRequest: { id: 'api', requestType: 'SERVICE' } },
      'updatedRequest.id',
      'must equal deploy.requestId (web)',
    ],
    [
      'updatedRequest invalid',
      { deploy, updatedRequest: { id: 'web', requestType: 'SERVICE', instances: 0 } },
      'updatedRequest.instances',
      'must be > 0',
    ],
    [
      'load-balanced updatedRequest without serviceBasePath',
      { deploy: { ...deploy, loadBalancerGroups: ['g'] }, updatedRequest: { id: 'web', requestType: 'SERVICE', loadBalanced: true } },
      'deploy.serviceBasePath',
      'is required because the request is load balanced',
    ],
  ])('%s → 400 naming %s', (_name, body, field, rule) => {
    const r = parse(body);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.details).toContainEqual({ field, rule });
    expect(r.message).toMatch(/^Invalid deploy: /);
  });

  it('names unknown fields at every level in one message', () => {
    const r = parse({ deploy: { ...deploy, foo: 1, bar: 2 }, force: true });
    expect(r.ok || r.message).toBe('Invalid deploy: Unknown field(s): deploy.foo, deploy.bar, force');
  });

  it('rejects a non-object body', () => {
    expect(parse('deploy')).toMatchObject({ ok: false, message: 'Request body must be a JSON object (got string)' });
  });
});

describe('toJsonSchema', () => {
  it.each(['draft-2020-12', 'openapi-3.0'] as const)('produces an input-side schema for every body (%s)', (target) => {
    const all = toJsonSchema({ target });
    expect(Object.keys(all)).toEqual([
      'RequestInput',
      'DeployInput',
      'DeployBody',
      'ScaleBody',
      'PauseBody',
      'UnpauseBody',
      'BounceBody',
      'DeleteRequestBody',
      'RunBody',
      'WebhookBody',
      'UpdateDeployBody',
      'DeployDecisionBody',
      'RollbackBody',
      'KillTaskBody',
      'HostChangeBody',
      'ExitCooldownBody',
      'SkipHealthchecksBody',
      'CreateTokenBody',
    ]);
    for (const schema of Object.values(all)) {
      expect(schema).toMatchObject({ type: 'object', additionalProperties: false });
      expect(schema).not.toHaveProperty('$schema');
    }
  });

  it('shows defaults, required fields and the ignored Singularity fields', () => {
    const { DeployInput, RequestInput } = toJsonSchema() as Record<
      string,
      { properties: Record<string, Record<string, unknown>>; required: string[] }
    >;
    expect(DeployInput?.required).toEqual(['requestId', 'id']);
    expect(DeployInput?.properties.deployHealthTimeoutSeconds).toMatchObject({ default: 120 });
    expect(DeployInput?.properties.loadBalancerPortIndex).toMatchObject({ default: 0 });
    expect(DeployInput?.properties.mesosLabels?.description).toMatch(/^Singularity field, stored but not acted on/);
    expect(RequestInput?.properties.instances).toMatchObject({ default: 1, type: 'integer' });
    // Singularity derives an absent requestType (from daemon, schedule and loadBalanced)
    expect(RequestInput?.required).toEqual(['id']);
  });
});
