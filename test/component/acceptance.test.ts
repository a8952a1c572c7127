// Acceptance (scenarios.md 13–24) on the real loop with fake runtime, balancer, health and checks.
import { afterEach, describe, expect, it } from 'vitest';
import { FakeCheck } from '../../src/checks/fake/index.ts';
import { parseInput, schemas } from '../../src/api/schemas/index.ts';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

const canary = (extra: Record<string, unknown> = {}) => ({
  canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, ...extra },
});

describe('acceptance', () => {
  it('S13 a PENDING check holds the group; FAILED fails the deploy with its message; old keep full capacity', async () => {
    const check = new FakeCheck('smoke');
    f = await engineFixture({ serverChecks: [check] });
    await f.activeRequest('web', 2);
    check.answer = { state: 'PENDING', message: 'warming up' };
    await f.deploy({ requestId: 'web', id: 'd2', ...canary({ acceptanceMode: 'CHECKS' }) });
    const pending = await f.pending('web');
    expect(pending?.progress.phase).toBe('ACCEPTANCE');
    expect(pending?.progress.targetActiveInstances).toBe(1);
    expect(pending?.progress.acceptanceResultMessageHistory).toEqual(['(smoke - PENDING) warming up']);
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([1, 2]);

    check.answer = { state: 'FAILED', message: 'error rate 12%' };
    await f.advance(1000);
    const result = await f.result('web', 'd2');
    expect(result?.deployState).toBe('FAILED');
    expect(result?.message).toContain('error rate 12%');
    expect(result?.deployFailures[0]?.reason).toBe('ACCEPTANCE_CHECK_FAILED');
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([1, 2]);
    expect(await f.serving('web', 'd2')).toEqual([]);
  });

  it('S14 a SUCCEEDED check advances each group; the history holds every step’s messages', async () => {
    const check = new FakeCheck('smoke');
    check.answer = { state: 'SUCCEEDED', message: 'all good' };
    f = await engineFixture({ serverChecks: [check] });
    await f.activeRequest('web', 2);
    await f.deploy({ requestId: 'web', id: 'd2', ...canary({ acceptanceMode: 'CHECKS' }) });
    const entry = await f.history('web', 'd2');
    expect(entry?.result?.deployState).toBe('SUCCEEDED');
    expect(entry?.progress?.acceptanceResultMessageHistory).toEqual(['(smoke - SUCCEEDED) all good', '(smoke - SUCCEEDED) all good']);
  });

  it('S15 non-canary CHECKS FAILED on a load-balanced request: one operation puts old back and takes new out, then FAILED', async () => {
    const check = new FakeCheck('smoke');
    check.answer = { state: 'PENDING', message: 'checking' };
    f = await engineFixture({ serverChecks: [check] });
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    const old = (await f.serving('web', 'd1')).map((t) => t.taskId.id).sort();
    await f.deploy({
      requestId: 'web',
      id: 'd2',
      serviceBasePath: '/svc',
      loadBalancerGroups: ['default'],
      canaryDeploySettings: { acceptanceMode: 'CHECKS' },
    });
    const fresh = (await f.serving('web', 'd2')).map((t) => t.taskId.id).sort();
    expect(await f.lbMembers('web')).toEqual(fresh);
    const before = f.balancer.operations.length;
    check.answer = { state: 'FAILED', message: 'bad' };
    await f.advance(1000);
    expect((await f.result('web', 'd2'))?.deployState).toBe('FAILED');
    const revert = f.balancer.operations.slice(before);
    expect(revert).toHaveLength(1);
    expect(revert[0]!.add.map((u) => u.taskId).sort()).toEqual(old);
    expect(revert[0]!.remove.map((u) => u.taskId).sort()).toEqual(fresh);
    expect(await f.lbMembers('web')).toEqual(old);
    expect(await f.serving('web', 'd2')).toEqual([]);
  });

  it('S16 CHECKS with no checks configured behaves like NONE', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    await f.deploy({ requestId: 'web', id: 'd2', ...canary({ acceptanceMode: 'CHECKS' }) });
    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
  });

  it('S17 a throwing check fails the deploy unless marked not to fail on error', async () => {
    const strict = new FakeCheck('strict');
    strict.answer = () => {
      throw new Error('boom');
    };
    f = await engineFixture({ serverChecks: [strict] });
    await f.activeRequest('web', 1);
    await f.deploy({ requestId: 'web', id: 'd2', canaryDeploySettings: { acceptanceMode: 'CHECKS' } });
    expect((await f.result('web', 'd2'))?.message).toContain('boom');
    expect((await f.result('web', 'd2'))?.deployState).toBe('FAILED');
    await f.close();

    const lenient = new FakeCheck('lenient', 1, false);
    lenient.answer = () => {
      throw new Error('boom');
    };
    f = await engineFixture({ serverChecks: [lenient] });
    await f.activeRequest('web', 1);
    await f.deploy({ requestId: 'web', id: 'd2', canaryDeploySettings: { acceptanceMode: 'CHECKS' } });
    const entry = await f.history('web', 'd2');
    expect(entry?.result?.deployState).toBe('SUCCEEDED');
    expect(entry?.progress?.acceptanceResultMessageHistory).toEqual(['(lenient - SUCCEEDED) Ignored err: boom']);
  });

  it('S18 a check stuck in PENDING past acceptanceTimeoutSeconds fails with ACCEPTANCE_TIMED_OUT', async () => {
    const check = new FakeCheck('slow');
    f = await engineFixture({ serverChecks: [check] });
    await f.activeRequest('web', 1);
    await f.deploy({ requestId: 'web', id: 'd2', acceptanceTimeoutSeconds: 10, canaryDeploySettings: { acceptanceMode: 'CHECKS' } });
    await f.advance(9000);
    expect(await f.pending('web')).toBeDefined();
    await f.advance(1000);
    const result = await f.result('web', 'd2');
    expect(result?.deployState).toBe('FAILED');
    expect(result?.deployFailures[0]?.reason).toBe('ACCEPTANCE_TIMED_OUT');
  });

  it('S19 a SUCCEEDED check is not asked again within its step; all run again after the step advances', async () => {
    const done = new FakeCheck('done');
    done.answer = { state: 'SUCCEEDED', message: 'ok' };
    const slow = new FakeCheck('slow');
    slow.answer = { state: 'PENDING', message: 'wait' };
    f = await engineFixture({ serverChecks: [done, slow] });
    await f.activeRequest('web', 2);
    await f.deploy({ requestId: 'web', id: 'd2', ...canary({ acceptanceMode: 'CHECKS' }) });
    await f.advance(1000);
    await f.advance(1000);
    expect(done.calls.filter((c) => c.step === 1)).toHaveLength(1);
    expect(slow.calls.filter((c) => c.step === 1).length).toBeGreaterThanOrEqual(3);
    slow.answer = { state: 'SUCCEEDED', message: 'ok' };
    await f.advance(1000);
    expect(done.calls.filter((c) => c.step === 2)).toHaveLength(1);
    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
  });

  it('S20 TIMED W: no task of the next group starts until W after the group was ready; the last group waits too', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    await f.deploy({ requestId: 'web', id: 'd2', ...canary({ acceptanceMode: 'TIMED', waitMillisBetweenGroups: 60_000 }) });
    expect(f.instances(await f.serving('web', 'd2'))).toEqual([1]);
    await f.advance(59_999);
    expect(f.instances(await f.serving('web', 'd2'))).toEqual([1]);
    await f.advance(1);
    expect(f.instances(await f.serving('web', 'd2'))).toEqual([1, 2]);
    await f.advance(59_999);
    expect(await f.pending('web')).toBeDefined();
    await f.advance(1);
    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
  });

  it('S21 MANUAL waits at each step for advance; reject fails it', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    await f.deploy({ requestId: 'web', id: 'd2', ...canary({ acceptanceMode: 'MANUAL' }) });
    await f.advance(600_000);
    expect((await f.pending('web'))?.progress).toMatchObject({ phase: 'ACCEPTANCE', step: 1 });
    await f.service.deployIntent('web', 'd2', { kind: 'advance', at: f.clock.now() });
    await f.settle();
    expect((await f.pending('web'))?.progress).toMatchObject({ phase: 'ACCEPTANCE', step: 2 });
    await f.service.deployIntent('web', 'd2', { kind: 'reject', at: f.clock.now(), message: 'looks wrong' });
    await f.settle();
    const result = await f.result('web', 'd2');
    expect(result?.deployState).toBe('FAILED');
    expect(result?.message).toContain('looks wrong');
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([1, 2]);
  });

  it('S22 update while waiting for acceptance skips it and jumps to the new target; out of range is a 400', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 4);
    await f.deploy({ requestId: 'web', id: 'd2', ...canary({ acceptanceMode: 'MANUAL' }) });
    await expect(f.service.deployIntent('web', 'd2', { kind: 'update', at: 0, targetActiveInstances: 5 })).rejects.toMatchObject({
      status: 400,
    });
    await expect(f.service.deployIntent('web', 'd2', { kind: 'update', at: 0, targetActiveInstances: 0 })).rejects.toMatchObject({
      status: 400,
    });
    await f.service.deployIntent('web', 'd2', { kind: 'update', at: f.clock.now(), targetActiveInstances: 3 });
    await f.settle();
    expect(f.instances(await f.serving('web', 'd2'))).toEqual([1, 2, 3]);
    expect((await f.pending('web'))?.progress).toMatchObject({ targetActiveInstances: 3, phase: 'ACCEPTANCE' });
  });

  it('S23 autoAdvanceDeploySteps false behaves as MANUAL; legacy step fields become canary group 1, TIMED 60 s, 3 cycles', async () => {
    const manual = parseInput(schemas.deploy(false), { requestId: 'web', id: 'x', command: 'c', autoAdvanceDeploySteps: false });
    expect(manual.ok && manual.value.canaryDeploySettings.acceptanceMode).toBe('MANUAL');
    const legacy = parseInput(schemas.deploy(false), {
      requestId: 'web',
      id: 'x',
      command: 'c',
      deployInstanceCountPerStep: 1,
      deployStepWaitTimeMs: 60000,
    });
    expect(legacy.ok && legacy.value.canaryDeploySettings).toMatchObject({
      enableCanaryDeploy: true,
      instanceGroupSize: 1,
      acceptanceMode: 'TIMED',
      waitMillisBetweenGroups: 60000,
      canaryCycleCount: 3,
    });
    f = await engineFixture();
    await f.activeRequest('web', 2);
    await f.deploy({ requestId: 'web', id: 'd2', autoAdvanceDeploySteps: false, deployInstanceCountPerStep: 1 });
    await f.advance(3_000_000);
    expect((await f.pending('web'))?.progress).toMatchObject({ phase: 'ACCEPTANCE', step: 1 });
  });

  it('S24 canarySettings is an alias; both is a 400; instanceGroupSize 0 is a 400; an unknown key is a 400 naming it', async () => {
    const alias = parseInput(schemas.deploy(false), {
      requestId: 'w',
      id: 'x',
      command: 'c',
      canarySettings: { enableCanaryDeploy: true, instanceGroupSize: 2 },
    });
    expect(alias.ok && alias.value.canaryDeploySettings).toMatchObject({ enableCanaryDeploy: true, instanceGroupSize: 2 });
    const both = parseInput(schemas.deploy(false), { requestId: 'w', id: 'x', command: 'c', canarySettings: {}, canaryDeploySettings: {} });
    expect(both.ok).toBe(false);
    const zero = parseInput(schemas.deploy(false), {
      requestId: 'w',
      id: 'x',
      command: 'c',
      canaryDeploySettings: { instanceGroupSize: 0 },
    });
    expect(!zero.ok && zero.message).toContain('instanceGroupSize');
    const unknown = parseInput(schemas.deploy(false), { requestId: 'w', id: 'x', command: 'c', canarySetings: {} });
    expect(!unknown.ok && unknown.message).toContain('canarySetings');
  });
});
