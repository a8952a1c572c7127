// Real `fledge serve` processes with a Docker host (a private dockerd, test/helpers/dockerd.ts,
// and the locally built test image): Singularity's own Docker deploy JSON posted as is, the UI's
// MESOS containerInfo as a process, a DOCKER deploy refused without a Docker host, an OOM kill
// reported as such, and a scheduler SIGKILLed mid-deploy with every container re-adopted.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskView } from '../../src/api/client.ts';
import { containersByTask, dockerDeploy, dockerHostArgs } from '../helpers/docker-service.ts';
import { importTestImage } from '../helpers/docker-images.ts';
import { startDockerd, type Dockerd } from '../helpers/dockerd.ts';
import {
  askService,
  exampleDeploy,
  isHealthy,
  portOf,
  serviceRequest,
  waitForDeployResult,
  waitForHealthyTasks,
} from '../helpers/example-service.ts';
import { cleanup, leakedProcesses, startFledgeProcess, trackTasks, type FledgeProcess } from '../helpers/fledge-process.ts';
import { cleanupRestarted, killAndRestart } from '../helpers/fledge-restart.ts';
import { reservePorts } from '../helpers/ports.ts';
import { makeTlsFiles } from '../helpers/tls-certs.ts';
import { DockerClient, DockerUnreachableError } from '../../src/runtimes/docker/client.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { waitFor } from '../helpers/wait-for.ts';

const LOCAL_PORTS = reservePorts(50);
const DOCKER_PORTS = reservePorts(50);
let dockerd: Dockerd;
let image: string;

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'integration' });
  image = await importTestImage(dockerd.client);
}, 120_000);

afterEach(async () => {
  await cleanupRestarted();
  // What a SIGKILLed Fledge left running.
  await dockerd.removeAllContainers();
});

afterAll(async () => {
  await cleanup();
  await dockerd?.stop();
  expect(leakedProcesses()).toEqual([]);
});

const args = () => dockerHostArgs(dockerd, DOCKER_PORTS);
const start = (extra: { dataDir?: string } = {}) => startFledgeProcess({ portRange: LOCAL_PORTS, args: args(), ...extra });

async function post(fledge: FledgeProcess, path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${fledge.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${fledge.token}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

// Docs/getting-started/basic-examples.md of HubSpot/Singularity, verbatim.
const SINGULARITY_REQUEST = {
  id: 'singularity-test-service',
  owners: ['you@example.com'],
  requestType: 'SERVICE',
  rackSensitive: false,
  loadBalanced: false,
};
const SINGULARITY_BRIDGE_DEPLOY = {
  deploy: {
    requestId: 'singularity-test-service',
    id: '4',
    containerInfo: {
      type: 'DOCKER',
      docker: {
        network: 'BRIDGE',
        image: 'hubspot/singularity-test-service:1.0',
        portMappings: [
          { containerPortType: 'LITERAL', containerPort: 8081, hostPortType: 'FROM_OFFER', hostPort: 0, protocol: 'tcp' },
          { containerPortType: 'LITERAL', containerPort: 8080, hostPortType: 'FROM_OFFER', hostPort: 1, protocol: 'tcp' },
        ],
      },
    },
    resources: { cpus: 0.1, memoryMb: 128, numPorts: 2 },
    healthcheck: { uri: '/healthcheck' },
  },
};

describe('Docker hosts through fledge serve', () => {
  it("accepts Singularity's Docker example as posted, and fails its tasks with Docker's message when the image cannot be pulled", async () => {
    const fledge = await start();
    expect((await post(fledge, '/api/requests', SINGULARITY_REQUEST)).status).toBe(200);
    const created = await post(fledge, '/api/deploys', SINGULARITY_BRIDGE_DEPLOY);
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    expect(created.body.warnings).toEqual([]);
    const done = await waitForDeployResult(fledge.client, 'singularity-test-service', '4', 30_000);
    expect(done.deployResult.deployState).toBe('FAILED');
    expect(done.deployResult.message).toMatch(
      /could not start \(Cannot pull image hubspot\/singularity-test-service:1\.0 on Docker host d1: .+\)/,
    );
    const stored = await fledge.client.deployHistoryEntry('singularity-test-service', '4');
    expect(stored.deploy.containerInfo).toEqual({
      type: 'DOCKER',
      docker: {
        image: 'hubspot/singularity-test-service:1.0',
        privileged: false,
        network: 'BRIDGE',
        portMappings: SINGULARITY_BRIDGE_DEPLOY.deploy.containerInfo.docker.portMappings,
        forcePullImage: false,
        dockerParameters: [],
      },
      volumes: [],
    });
  });

  it('publishes BRIDGE port mappings on the task ports, as Docker shows them', async () => {
    const fledge = await start();
    await post(fledge, '/api/requests', { ...SINGULARITY_REQUEST, instances: 2 });
    const body = structuredClone(SINGULARITY_BRIDGE_DEPLOY);
    body.deploy.containerInfo.docker.image = image;
    expect((await post(fledge, '/api/deploys', body)).status).toBe(200);
    const tasks = await waitFor(
      async () => {
        const live = await fledge.client.requestTasks('singularity-test-service');
        return live.length === 2 && live.every((t) => t.container !== undefined) && live;
      },
      { timeoutMs: 20_000, message: 'both containers to be created' },
    );
    for (const t of tasks) {
      const c = await dockerd.client.inspectContainer(t.container!);
      expect(c?.HostConfig.NetworkMode).toBe('bridge');
      expect(c?.HostConfig.PortBindings).toEqual({
        '8081/tcp': [{ HostIp: '', HostPort: String(t.ports[0]) }],
        '8080/tcp': [{ HostIp: '', HostPort: String(t.ports[1]) }],
      });
      expect(t).toMatchObject({ host: 'd1', address: '127.0.0.1' });
      for (const p of t.ports) expect(p >= DOCKER_PORTS.from && p <= DOCKER_PORTS.to).toBe(true);
    }
  });

  it('runs a host-networked container deploy, reads its logs and lists it on its host', async () => {
    const fledge = await start();
    await fledge.client.createRequest(serviceRequest('web', 2, { loadBalanced: true }));
    await fledge.client.createDeploy(dockerDeploy('web', 'v1', image, { serviceBasePath: '/web', loadBalancerGroups: ['default'] }));
    const done = await waitForDeployResult(fledge.client, 'web', 'v1', 30_000);
    expect(done.deployResult.deployState, done.deployResult.message).toBe('SUCCEEDED');
    const tasks = await waitForHealthyTasks(fledge.client, 'web', { count: 2, deployId: 'v1', exclusive: true });
    for (const t of tasks) expect((await askService(portOf(t))).task).toBe(t.taskId.id);
    const answer = await (await fetch(`${fledge.lbUrl}/web/x`, { signal: AbortSignal.timeout(5_000) })).json();
    expect(answer).toMatchObject({ version: 'v1' });
    const logs = await waitFor(async () => {
      const chunk = await fledge.client.readLogs(tasks[0]!.taskId.id, 'stdout');
      return chunk.data.includes('listening on') && chunk;
    });
    expect(logs.data).toBe(`listening on ${tasks[0]!.ports[0]} (v1)\n`);
    const hosts = await fledge.client.listHosts();
    expect(hosts.map((h) => [h.id, h.state, h.tasks.length])).toEqual([
      ['local', 'ACTIVE', 0],
      ['d1', 'ACTIVE', 2],
    ]);
    expect(hosts[1]?.reserved).toEqual({ cpus: 0.2, memoryMb: 128, ports: 2 });
  });

  it('copies the artifacts (uris) into the container at $MESOS_SANDBOX before it starts', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fledge-docker-artifact-'));
    writeFileSync(path.join(dir, 'conf.txt'), 'from the artifact\n');
    try {
      const fledge = await start();
      await fledge.client.createRequest(serviceRequest('art', 1));
      await fledge.client.createDeploy(
        dockerDeploy('art', 'v1', image, {
          command: 'cat "$MESOS_SANDBOX/conf.txt" && exec sleep 60',
          shell: true,
          uris: [pathToFileURL(path.join(dir, 'conf.txt')).href],
          healthcheck: undefined,
          considerHealthyAfterRunningForSeconds: 0,
        }),
      );
      const done = await waitForDeployResult(fledge.client, 'art', 'v1', 30_000);
      expect(done.deployResult.deployState, done.deployResult.message).toBe('SUCCEEDED');
      const [task] = await fledge.client.requestTasks('art');
      const logs = await waitFor(async () => {
        const chunk = await fledge.client.readLogs(task!.taskId.id, 'stdout');
        return chunk.data.length > 0 && chunk;
      });
      expect(logs.data).toBe('from the artifact\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("runs Singularity UI's containerInfo type MESOS as a process on local", async () => {
    const fledge = await start();
    await fledge.client.createRequest(serviceRequest('proc', 1));
    const body = exampleDeploy('proc', 'v1', { deploy: { containerInfo: { type: 'MESOS' } } });
    await fledge.client.createDeploy(body);
    expect((await waitForDeployResult(fledge.client, 'proc', 'v1')).deployResult.deployState).toBe('SUCCEEDED');
    const [t] = await waitForHealthyTasks(fledge.client, 'proc', { count: 1 });
    expect(t).toMatchObject({ host: 'local', pid: expect.any(Number) });
    expect(t?.container).toBeUndefined();
  });

  it('refuses a DOCKER deploy on a server without Docker hosts with a 400 naming the reason', async () => {
    const fledge = await startFledgeProcess({ portRange: LOCAL_PORTS });
    await fledge.client.createRequest(serviceRequest('web', 1));
    const res = await post(fledge, '/api/deploys', dockerDeploy('web', 'v1', image));
    expect(res.status).toBe(400);
    expect(res.body.details).toContainEqual({
      field: 'deploy.containerInfo.type',
      rule: 'DOCKER needs a Docker host and this server has none (start Fledge with --docker-host)',
    });
  });

  it('reports a container killed for its memory as OOM killed in the task', async () => {
    const fledge = await start();
    await fledge.client.createRequest(serviceRequest('hog', 1));
    await fledge.client.createDeploy(
      dockerDeploy('hog', 'v1', image, {
        arguments: ['node', '/app/test/fixtures/docker/eat-memory.mjs'],
        resources: { cpus: 0.2, memoryMb: 48, numPorts: 0 },
        healthcheck: undefined,
        considerHealthyAfterRunningForSeconds: 30,
      }),
    );
    const done = await waitForDeployResult(fledge.client, 'hog', 'v1', 30_000);
    expect(done.deployResult.deployState).toBe('FAILED');
    const [failed] = await fledge.client.deployHistoryEntry('hog', 'v1').then((e) => e.deployResult?.deployFailures ?? []);
    const task = await fledge.client.getTask(failed!.taskId!.id);
    expect(task).toMatchObject({ state: 'TASK_FAILED', signal: 'SIGKILL' });
    expect(task.taskUpdates?.at(-1)?.statusMessage).toMatch(
      /^OOM killed: the container exceeded its memory limit of 48 MB \(resources.memoryMb\) \(signal SIGKILL\)$/,
    );
  });

  it('marks a Docker host UNREACHABLE while its daemon is down and places on it again once it answers', async () => {
    // A second daemon next to the first: two hosts on this machine, distinct port ranges.
    const other = await startDockerd({ name: 'second host' });
    try {
      await importTestImage(other.client);
      const otherPorts = reservePorts(50);
      const fledge = await startFledgeProcess({
        portRange: LOCAL_PORTS,
        args: [...dockerHostArgs(other, otherPorts, 'd2'), '--host-unreachable-seconds', '1'],
      });
      const state = async () => (await fledge.client.getHost('d2')).state;
      expect(await state()).toBe('ACTIVE');
      other.kill('SIGKILL');
      await waitFor(async () => (await state()) === 'UNREACHABLE', { timeoutMs: 15_000, message: 'd2 to be UNREACHABLE' });
      const agents = (await (await fetch(`${fledge.url}/api/agents`, { headers: { authorization: `Bearer ${fledge.token}` } })).json()) as {
        id: string;
        currentState: { state: string; message: string };
      }[];
      expect(agents.find((a) => a.id === 'd2')?.currentState).toMatchObject({
        state: 'DEAD',
        message: expect.stringMatching(/^UNREACHABLE: /),
      });

      await fledge.client.createRequest(serviceRequest('later', 1));
      await fledge.client.createDeploy(dockerDeploy('later', 'v1', image));
      const waiting = await waitFor(async () => (await fledge.client.requestTasks('later'))[0]?.waitingReason, {
        timeoutMs: 10_000,
        message: 'the task to wait for the host',
      });
      expect(waiting).toMatch(/^host d2 is UNREACHABLE \(/);

      await other.start();
      await waitFor(async () => (await state()) === 'ACTIVE', { timeoutMs: 15_000, message: 'd2 to answer again' });
      expect((await waitForDeployResult(fledge.client, 'later', 'v1', 30_000)).deployResult.deployState).toBe('SUCCEEDED');
      const [task] = await waitForHealthyTasks(fledge.client, 'later', { count: 1 });
      expect(task).toMatchObject({ host: 'd2' });
      expect(otherPorts.from <= task!.ports[0]! && task!.ports[0]! <= otherPorts.to).toBe(true);
    } finally {
      await cleanupRestarted();
      await other.stop();
    }
  });

  it('drives a Docker host over tcp with TLS client certificates', async () => {
    const tls = makeTlsFiles();
    const [port] = [reservePorts(1).from];
    const secured = await startDockerd({
      name: 'tls host',
      args: [
        '-H',
        `tcp://127.0.0.1:${port}`,
        '--tlsverify',
        `--tlscacert=${tls.ca}`,
        `--tlscert=${tls.serverCert}`,
        `--tlskey=${tls.serverKey}`,
      ],
    });
    try {
      await importTestImage(secured.client);
      const withCert = new DockerClient({
        kind: 'tcp',
        host: '127.0.0.1',
        port: port!,
        tls: { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey },
      });
      await withCert.ping();
      withCert.close();
      // Without a client certificate the daemon refuses the connection.
      const without = new DockerClient({ kind: 'tcp', host: '127.0.0.1', port: port!, tls: { ca: tls.ca } }, { timeoutMs: 3_000 });
      await expect(without.ping()).rejects.toBeInstanceOf(DockerUnreachableError);
      without.close();

      const tlsPorts = reservePorts(50);
      const fledge = await startFledgeProcess({
        portRange: LOCAL_PORTS,
        args: [
          '--docker-host',
          `id=secure,endpoint=tcp://127.0.0.1:${port},ports=${tlsPorts.from}-${tlsPorts.to}`,
          '--docker-tls-ca',
          tls.ca,
          '--docker-tls-cert',
          tls.clientCert,
          '--docker-tls-key',
          tls.clientKey,
        ],
      });
      await fledge.client.createRequest(serviceRequest('tls', 1));
      await fledge.client.createDeploy(dockerDeploy('tls', 'v1', image));
      expect((await waitForDeployResult(fledge.client, 'tls', 'v1', 30_000)).deployResult.deployState).toBe('SUCCEEDED');
      const [task] = await waitForHealthyTasks(fledge.client, 'tls', { count: 1 });
      expect(task).toMatchObject({ host: 'secure', address: '127.0.0.1' });
      expect((await fledge.client.getHost('secure')).capacity?.cpus).toBeGreaterThan(0);
    } finally {
      await cleanupRestarted();
      await secured.stop();
      rmSync(tls.dir, { recursive: true, force: true });
    }
  });

  it('re-adopts every container after a SIGKILL mid-deploy, learns an exit that happened meanwhile, and finishes the deploy', async () => {
    const first = await start();
    await first.client.createRequest(serviceRequest('web', 3));
    await first.client.createDeploy(dockerDeploy('web', 'v1', image));
    expect((await waitForDeployResult(first.client, 'web', 'v1', 30_000)).deployResult.deployState).toBe('SUCCEEDED');
    await waitForHealthyTasks(first.client, 'web', { count: 3, deployId: 'v1', exclusive: true });

    // v2 takes 1.5 s to listen: the scheduler dies while its containers start.
    await first.client.createDeploy(
      dockerDeploy('web', 'v2', image, {
        env: { VERSION: 'v2', STARTUP_DELAY_MS: '1500' },
        canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 3 },
      }),
    );
    const before = await waitFor(
      async () => {
        const tasks = await first.client.requestTasks('web');
        return tasks.filter((t) => t.taskId.deployId === 'v2' && t.container).length === 3 && tasks;
      },
      { timeoutMs: 20_000, intervalMs: 20, message: 'all v2 containers to be started' },
    );
    expect(before.filter((t) => t.taskId.deployId === 'v2').some(isHealthy)).toBe(false);
    const containersBefore = await containersByTask(dockerd);
    first.kill('SIGKILL');
    await first.waitExit();

    // While nobody watches, one v1 container is killed outright.
    const victim = before.find((t) => t.taskId.deployId === 'v1')!;
    await dockerd.client.killContainer(containersBefore.get(victim.taskId.id)![0]!.id, 'SIGKILL');

    const { fledge: second } = await killAndRestart(first, { args: args(), portRange: LOCAL_PORTS });
    // Every task is known again with the very container it had.
    for (const t of before) {
      if (t.taskId.id === victim.taskId.id) continue;
      const known = await second.client.getTask(t.taskId.id);
      expect(known.container).toBe(t.container);
      expect(containersBefore.get(t.taskId.id)).toHaveLength(1);
    }
    const ended = await waitFor(
      async () => {
        const t = await second.client.getTask(victim.taskId.id);
        return t.doneAt !== undefined && t;
      },
      { timeoutMs: 15_000, message: `the exit of ${victim.taskId.id} to be learned` },
    );
    expect(ended).toMatchObject({ signal: 'SIGKILL' });
    expect(['TASK_FAILED', 'TASK_KILLED']).toContain(ended.state);

    const done = await waitForDeployResult(second.client, 'web', 'v2', 30_000);
    expect(done.deployResult.deployState, done.deployResult.message).toBe('SUCCEEDED');
    const after = await waitForHealthyTasks(second.client, 'web', { count: 3, deployId: 'v2', exclusive: true });
    expect(after.map((t) => t.taskId.id).sort()).toEqual(
      before
        .filter((t) => t.taskId.deployId === 'v2')
        .map((t) => t.taskId.id)
        .sort(),
    );
    // Nothing ran twice: one container per task, and none left of the old deploy.
    const wanted = after.map((t: TaskView) => t.taskId.id).sort();
    await waitFor(
      async () => {
        const now = await containersByTask(dockerd);
        const seen = [...now].map(([task, cs]) => `${task}: ${cs.map((c) => c.state).join(',')}`).sort();
        if ([...now.keys()].sort().join() !== wanted.join() || [...now.values()].some((c) => c.length !== 1))
          throw new Error(seen.join('; '));
        return true;
      },
      { timeoutMs: 15_000, message: 'exactly the v2 containers to remain' },
    );
    trackTasks(after);
  });
});
