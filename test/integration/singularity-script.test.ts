// A deploy pipeline script written for Singularity, against a real `fledge serve`: plain HTTP
// to Singularity's endpoints only (no Fledge-only call, no Fledge client), reading back only
// Singularity's fields. It creates a request, posts a step-wise deploy that waits at each step
// (autoAdvanceDeploySteps: false), advances it with POST /api/deploys/update as Singularity's
// UI does until it succeeds, reads the tasks and their ports the way Singularity's clients do,
// scales for a while and keeps the scale, browses the sandbox, and deletes the request.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { EXAMPLE_SERVICE, nodeCommand } from '../helpers/example-service.ts';
import { cleanup, leakedProcesses, startFledgeProcess } from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

const PORTS = reservePorts(20);

afterEach(cleanup);
afterAll(async () => {
  await cleanup();
  expect(leakedProcesses()).toEqual([]);
});

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('a Singularity deploy script', () => {
  it('drives a step-wise deploy to SUCCEEDED through Singularity’s endpoints only', async () => {
    const fledge = await startFledgeProcess({ portRange: PORTS });
    const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> => {
      const res = await fetch(`${fledge.url}/api${path}`, {
        method,
        headers: { Authorization: `Bearer ${fledge.token}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, body: text ? (JSON.parse(text) as Json) : {} };
    };
    const ok = async (method: string, path: string, body?: unknown) => {
      const res = await call(method, path, body);
      expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBe(200);
      return res.body;
    };

    await ok('POST', '/requests', {
      id: 'pipeline',
      owners: ['you@example.com'],
      requestType: 'SERVICE',
      instances: '2',
      rackSensitive: false,
    });
    await ok('POST', '/deploys', {
      deploy: {
        requestId: 'pipeline',
        id: 'build_42',
        command: nodeCommand(EXAMPLE_SERVICE),
        env: { VERSION: '${TASK_DEPLOY_ID}' },
        resources: { cpus: 0.1, memoryMb: 128, numPorts: 1 },
        healthcheck: { uri: '/health', startupIntervalSeconds: 0.1, intervalSeconds: 0.5 },
        deployInstanceCountPerStep: 1,
        autoAdvanceDeploySteps: false,
      },
      message: 'from CI',
    });

    // The first step waits for its advance: 1 new task healthy, the deploy still pending.
    await waitFor(
      async () => {
        const parent = await ok('GET', '/requests/request/pipeline');
        const progress = parent.pendingDeployState?.deployProgress;
        return progress?.targetActiveInstances === 1 && parent.taskIds.healthy.length === 1;
      },
      { timeoutMs: 30_000 },
    );
    // What Singularity's "Advance deploy" button posts: the next target, here every instance.
    await ok('POST', '/deploys/update', { requestId: 'pipeline', deployId: 'build_42', targetActiveInstances: 2 });
    const history = await waitFor(
      async () => {
        const h = await ok('GET', '/history/request/pipeline/deploy/build_42');
        return h.deployResult ? h : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(history.deployResult.deployState).toBe('SUCCEEDED');
    const parent = await ok('GET', '/requests/request/pipeline');
    expect(parent.requestDeployState.activeDeploy.deployId).toBe('build_42');
    expect(parent.state).toBe('ACTIVE');

    // Tasks, their host and their ports as Singularity's clients read them.
    const ids = await ok('GET', '/tasks/ids/request/pipeline');
    expect(ids.healthy).toHaveLength(2);
    const counts = await ok('GET', '/tasks/counts/request/pipeline');
    expect(counts).toEqual({ requestId: 'pipeline', active: 2, pending: 0, cleaning: 0 });
    const tasks = (await ok('GET', '/tasks/request/pipeline')) as unknown as Json[];
    for (const t of tasks) {
      const ports = t.mesosTask.resources.find((r: Json) => r.name === 'ports').ranges.range[0].begin as number;
      const answer = (await (
        await fetch(`http://${t.offers[0].hostname === 'local' ? '127.0.0.1' : t.offers[0].hostname}:${ports}/`)
      ).json()) as Json;
      expect(answer).toMatchObject({ version: 'build_42', task: t.taskId.id });
      expect(t.taskRequest.deploy.id).toBe('build_42');
    }
    const active = (await ok('GET', '/history/request/pipeline/tasks/active')) as unknown as Json[];
    expect(active.map((t) => t.lastTaskState)).toEqual(['TASK_RUNNING', 'TASK_RUNNING']);

    // The sandbox, browsed and read as Singularity's UI does.
    const sandbox = await ok('GET', `/sandbox/${tasks[0]!.taskId.id}/browse`);
    expect(sandbox.files.map((f: Json) => f.name)).toContain('stdout');
    expect((await call('GET', `/sandbox/${tasks[0]!.taskId.id}/browse?path=../..`)).status).toBe(400);

    // An expiring scale, then kept (Singularity's "make permanent").
    const scaled = await ok('PUT', '/requests/request/pipeline/scale', { instances: 3, durationMillis: 600_000, message: 'peak' });
    expect(scaled.expiringScale).toMatchObject({ revertToInstances: 2 });
    const kept = await ok('DELETE', '/requests/request/pipeline/scale');
    expect(kept.expiringScale).toBeUndefined();
    expect(kept.request.instances).toBe(3);
    await waitFor(async () => (await ok('GET', '/tasks/ids/request/pipeline')).healthy.length === 3, { timeoutMs: 30_000 });

    // Delete answers with the request, as Singularity's does; its tasks stop.
    const deleted = await ok('DELETE', '/requests/request/pipeline', { message: 'done' });
    expect(deleted).toMatchObject({ id: 'pipeline', requestType: 'SERVICE', instances: 3 });
    await waitFor(async () => (await call('GET', '/requests/request/pipeline')).status === 404, { timeoutMs: 30_000 });
    const events = (await ok('GET', '/history/request/pipeline/requests')) as unknown as Json[];
    expect(events.map((e) => e.eventType)).toEqual(['DELETING', 'SCALE_REVERTED', 'SCALED', 'CREATED']);
  }, 120_000);
});
