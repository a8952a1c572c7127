// Two Docker hosts through a real `fledge serve` process, with the scheduler SIGKILLed: a host
// that dies while the scheduler is down is found UNREACHABLE after the restart, its tasks are
// lost and replaced on the other host, and once its daemon is back its containers are removed.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { containersByTask, dockerDeploy, dockerHostArgs } from '../helpers/docker-service.ts';
import { importTestImage } from '../helpers/docker-images.ts';
import { startDockerd, type Dockerd } from '../helpers/dockerd.ts';
import { serviceRequest, waitForDeployResult, waitForHealthyTasks } from '../helpers/example-service.ts';
import { cleanup, leakedProcesses, startFledgeProcess, trackTasks } from '../helpers/fledge-process.ts';
import { cleanupRestarted, killAndRestart } from '../helpers/fledge-restart.ts';
import { reservePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

const LOCAL_PORTS = reservePorts(20);
const PORTS = { d1: reservePorts(50), d2: reservePorts(50) };
let d1: Dockerd;
let d2: Dockerd;
let image: string;

beforeAll(async () => {
  [d1, d2] = await Promise.all([startDockerd({ name: 'host d1' }), startDockerd({ name: 'host d2' })]);
  [image] = await Promise.all([importTestImage(d1.client), importTestImage(d2.client)]);
}, 120_000);

afterEach(async () => {
  await cleanupRestarted();
  await Promise.all([d1.removeAllContainers().catch(() => undefined), d2.removeAllContainers()]);
});

afterAll(async () => {
  await cleanup();
  await Promise.all([d1?.stop(), d2?.stop()]);
  expect(leakedProcesses()).toEqual([]);
});

/** `serve` flags of both hosts (their sockets are known once beforeAll ran). */
const hostArgs = () => [...dockerHostArgs(d1, PORTS.d1, 'd1'), ...dockerHostArgs(d2, PORTS.d2, 'd2'), '--host-unreachable-seconds', '2'];

describe('two Docker hosts and a scheduler SIGKILL', () => {
  it('a host that died while the scheduler was down: its tasks are lost and replaced after the restart, its containers removed once it is back', async () => {
    const serveArgs = hostArgs();
    const first = await startFledgeProcess({ portRange: LOCAL_PORTS, args: serveArgs });
    await first.client.createRequest(serviceRequest('web', 2));
    await first.client.createDeploy(dockerDeploy('web', 'v1', image));
    expect((await waitForDeployResult(first.client, 'web', 'v1', 30_000)).deployResult.deployState).toBe('SUCCEEDED');
    const before = await waitForHealthyTasks(first.client, 'web', { count: 2, deployId: 'v1', exclusive: true });
    expect(before.map((t) => t.host).sort()).toEqual(['d1', 'd2']);
    const onD1 = before.find((t) => t.host === 'd1')!;
    const onD2 = before.find((t) => t.host === 'd2')!;

    // The host dies, then the scheduler: nobody saw d1 go.
    d1.crash();
    const { fledge: second } = await killAndRestart(first, { args: serveArgs, portRange: LOCAL_PORTS });
    await waitFor(async () => (await second.client.getHost('d1')).state === 'UNREACHABLE', {
      timeoutMs: 15_000,
      message: 'd1 to be UNREACHABLE after the restart',
    });
    const lost = await waitFor(
      async () => {
        const t = await second.client.getTask(onD1.taskId.id);
        return t.state === 'TASK_LOST' && t;
      },
      { timeoutMs: 15_000, message: `${onD1.taskId.id} to be lost` },
    );
    expect(lost).toMatchObject({ lostWithHost: 'd1' });
    const after = await waitForHealthyTasks(second.client, 'web', { count: 2, deployId: 'v1', exclusive: true, timeoutMs: 30_000 });
    expect(after.map((t) => t.host)).toEqual(['d2', 'd2']);
    // The task on d2 was re-adopted, not replaced.
    expect(after.map((t) => t.taskId.id)).toContain(onD2.taskId.id);

    await d1.start();
    await waitFor(async () => (await second.client.getHost('d1')).state === 'ACTIVE', { timeoutMs: 15_000, message: 'd1 to answer again' });
    await waitFor(async () => (await containersByTask(d1)).size === 0, { timeoutMs: 30_000, message: 'the dead container to be removed' });
    expect([...(await containersByTask(d2)).keys()].sort()).toEqual(after.map((t) => t.taskId.id).sort());
    expect((await second.client.getHost('d1')).reserved).toEqual({ cpus: 0, memoryMb: 0, ports: 0 });
    trackTasks(after);
  }, 120_000);
});
