// The Docker runtime against a real, private dockerd (test/helpers/dockerd.ts) and an image
// built here (test/helpers/docker-images.ts): the runtime contract, then what is Docker's own
// (limits, OOM kills, images, BRIDGE port mappings, docker run options, re-adoption, logs).
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DockerInfo } from '../../core/container.ts';
import { importTestImage } from '../../../test/helpers/docker-images.ts';
import { startDockerd, type Dockerd } from '../../../test/helpers/dockerd.ts';
import { baseSpec, runtimeContract } from '../contract.case.ts';
import { randomPortRange, tempDataDir, waitFor } from '../test-support.ts';
import type { StartResult, TaskSpec, TaskStatus } from '../types.ts';
import { DockerClient } from './client.ts';
import { LABELS } from './container-config.ts';
import { createDockerRuntime, type DockerRuntime, type DockerRuntimeOptions } from './docker-runtime.ts';

let dockerd: Dockerd;
let image: string;

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'runtime tests' });
  image = await importTestImage(dockerd.client);
}, 120_000);

afterAll(async () => {
  await dockerd?.stop();
});

const docker = (overrides: Partial<DockerInfo> = {}): DockerInfo => ({
  image,
  privileged: false,
  network: 'HOST',
  portMappings: [],
  forcePullImage: false,
  dockerParameters: [],
  ...overrides,
});

// Prints its env, then blocks on a FIFO in the shared /ctl volume until a test writes the exit code.
const CONTROLLED = 'env; mkfifo /ctl/$TASK_ID; read code < /ctl/$TASK_ID; exit "$code"';

interface Setup {
  runtime: DockerRuntime;
  dataDir: string;
  ctl: string;
  installationId: string;
  exits: { taskId: string; status: TaskStatus }[];
  make(extra?: Partial<DockerRuntimeOptions>): { runtime: DockerRuntime; exits: { taskId: string; status: TaskStatus }[] };
  spec(taskId: string, overrides?: Partial<TaskSpec>): TaskSpec;
  stdout(taskId: string): string;
  close(): Promise<void>;
}

async function setup(options: Partial<DockerRuntimeOptions> = {}): Promise<Setup> {
  const dataDir = await tempDataDir('fledge-docker-');
  const ctl = mkdtempSync(path.join(tmpdir(), 'fledge-ctl-'));
  const installationId = randomUUID().replaceAll('-', '');
  const portRange = options.portRange ?? randomPortRange(20);
  const runtimes: DockerRuntime[] = [];
  const make = (extra: Partial<DockerRuntimeOptions> = {}) => {
    const runtime = createDockerRuntime({
      hostId: 'd1',
      client: new DockerClient({ kind: 'unix', socketPath: dockerd.socket }),
      address: '127.0.0.1',
      dataDir,
      installationId,
      portRange,
      capacity: { cpus: 2, memoryMb: 1024 },
      probePorts: true,
      ...options,
      ...extra,
    });
    runtimes.push(runtime);
    const exits: { taskId: string; status: TaskStatus }[] = [];
    runtime.onExit((taskId, status) => exits.push({ taskId, status }));
    return { runtime, exits };
  };
  const first = make();
  return {
    ...first,
    dataDir,
    ctl,
    installationId,
    make,
    spec: (taskId, overrides = {}) =>
      baseSpec(taskId, {
        command: CONTROLLED,
        shell: true,
        container: { docker: docker(), volumes: [{ containerPath: '/ctl', hostPath: ctl, mode: 'RW' }] },
        ...overrides,
      }),
    stdout: (taskId) => {
      try {
        return readFileSync(path.join(first.runtime.sandboxPath(taskId), 'stdout'), 'utf8');
      } catch {
        return '';
      }
    },
    close: async () => {
      for (const r of runtimes) await r.close();
      const left = await dockerd.client.listContainers([`${LABELS.installation}=${installationId}`]);
      await Promise.all(left.map((c) => dockerd.client.removeContainer(c.Id, { force: true })));
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(ctl, { recursive: true, force: true });
    },
  };
}

const started = (result: StartResult) => {
  if (result.kind !== 'started') throw new Error(`expected started, got ${JSON.stringify(result)}`);
  return result;
};

runtimeContract('docker', async () => {
  const s = await setup();
  const capacity = { cpus: 2, memoryMb: 1024 };
  const fifo = (taskId: string) => path.join(s.ctl, taskId);
  return {
    runtime: s.runtime,
    capacity,
    portRange: s.runtime.portRange(),
    spec: s.spec,
    env: async (taskId) => {
      const text = await waitFor(
        () => existsSync(fifo(taskId)) && s.stdout(taskId).includes('TASK_ID=') && s.stdout(taskId),
        `${taskId} to print its env`,
        {
          timeoutMs: 10_000,
        },
      );
      return Object.fromEntries(
        text
          .split('\n')
          .filter((l) => l.includes('='))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
    },
    exit: async (taskId, code) => {
      await waitFor(() => existsSync(fifo(taskId)), `${taskId} to be up`, { timeoutMs: 10_000 });
      writeFileSync(fifo(taskId), `${code}\n`);
    },
    close: s.close,
  };
});

describe('docker runtime', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()?.();
  });
  const use = async (options: Partial<DockerRuntimeOptions> = {}) => {
    const s = await setup(options);
    cleanups.push(s.close);
    return s;
  };
  const inspect = async (name: string) => {
    const c = await dockerd.client.inspectContainer(name);
    if (!c) throw new Error(`no container ${name}`);
    return c;
  };

  it('sets cpus and memory as Docker limits, runs an init as PID 1 and labels the container', async () => {
    const s = await use();
    const { handle, ports } = started(
      await s.runtime.start(s.spec('limits', { cpus: 0.25, memoryMb: 48, numPorts: 2, requestId: 'req', deployId: 'dep', instanceNo: 2 })),
    );
    const c = await inspect(String(handle.container));
    expect(c.HostConfig).toMatchObject({
      NanoCpus: 250_000_000,
      Memory: 48 * 1024 * 1024,
      MemorySwap: 48 * 1024 * 1024,
      Init: true,
      NetworkMode: 'host',
    });
    expect(c.Config.Labels).toMatchObject({
      [LABELS.installation]: s.installationId,
      [LABELS.task]: 'limits',
      [LABELS.request]: 'req',
      [LABELS.deploy]: 'dep',
      [LABELS.instance]: '2',
      [LABELS.host]: 'd1',
      [LABELS.ports]: ports.join(','),
    });
    expect(handle).toMatchObject({ host: 'd1', address: '127.0.0.1', ports });
    // The output of tasks is the scheduler user's alone.
    expect(statSync(path.join(s.dataDir, 'hosts')).mode & 0o777).toBe(0o700);
    expect(statSync(s.runtime.sandboxPath('limits')).mode & 0o777).toBe(0o700);
  });

  it('reports an OOM kill as such', async () => {
    const s = await use();
    const spec = s.spec('oom', {
      command: undefined,
      shell: false,
      arguments: ['node', '/app/test/fixtures/docker/eat-memory.mjs'],
      memoryMb: 48,
    });
    started(await s.runtime.start(spec));
    const [exit] = await waitFor(() => s.exits.length > 0 && s.exits, 'the OOM kill', { timeoutMs: 20_000 });
    expect(exit?.status).toMatchObject({ state: 'exited', exitCode: null, signal: 'SIGKILL' });
    expect(exit?.status.state === 'exited' && exit.status.message).toMatch(/^OOM killed: the container exceeded its memory limit of 48 MB/);
    expect(s.stdout('oom')).toContain('holding 16 MB');
  });

  it("fails a task whose image cannot be pulled with Docker's message, holding nothing", async () => {
    const s = await use();
    const result = await s.runtime.start(
      s.spec('no-image', { container: { docker: docker({ image: 'fledge-test/does-not-exist:1' }), volumes: [] } }),
    );
    expect(result.kind).toBe('error');
    expect(result.kind === 'error' && result.message).toMatch(/^Cannot pull image fledge-test\/does-not-exist:1 on Docker host d1: .+/);
    expect(s.runtime.hostUsage()).toMatchObject({ cpus: 0, memoryMb: 0, ports: 0 });
    expect(await dockerd.client.listContainers([`${LABELS.installation}=${s.installationId}`])).toEqual([]);
  });

  it('pulls even a local image with forcePullImage, and fails when the registry cannot be reached', async () => {
    const s = await use();
    const result = await s.runtime.start(s.spec('force-pull', { container: { docker: docker({ forcePullImage: true }), volumes: [] } }));
    expect(result.kind === 'error' && result.message).toMatch(
      new RegExp(`^Cannot pull image ${image.replace(/[/.]/g, '\\$&')} on Docker host d1: `),
    );
  });

  it('reports a command the image does not have with the init process’s words', async () => {
    const s = await use();
    started(await s.runtime.start(s.spec('no-exec', { command: '/no/such/binary', shell: false })));
    const [exit] = await waitFor(() => s.exits.length > 0 && s.exits, 'the exit', { timeoutMs: 10_000 });
    expect(exit?.status).toMatchObject({ exitCode: 127, signal: null });
    expect(exit?.status.state === 'exited' && exit.status.message).toMatch(/exec \/no\/such\/binary failed: No such file or directory/);
  });

  it('runs command and arguments as the Cmd, and command under /bin/sh -c with shell', async () => {
    const s = await use();
    const argv = started(
      await s.runtime.start(
        s.spec('argv', { shell: false, command: 'node', arguments: ['-e', 'console.log(process.argv.length, "$HOME")'] }),
      ),
    );
    const sh = started(await s.runtime.start(s.spec('sh', { shell: true, command: 'echo "shell $((1 + 2))"' })));
    await waitFor(() => s.exits.length === 2, 'both to exit', { timeoutMs: 10_000 });
    expect(s.stdout('argv')).toBe('1 $HOME\n');
    expect(s.stdout('sh')).toBe('shell 3\n');
    expect((await s.runtime.inspect(argv.handle)).state).toBe('exited');
    expect((await s.runtime.inspect(sh.handle)).state).toBe('exited');
  });

  it('runs the image CMD when the deploy gives no command', async () => {
    const s = await use();
    const { ports } = started(
      await s.runtime.start(s.spec('image-cmd', { command: undefined, shell: false, numPorts: 1, env: { VERSION: 'from-image' } })),
    );
    const answer = await waitFor(
      async () => {
        const res = await fetch(`http://127.0.0.1:${ports[0]}/`).catch(() => undefined);
        return res?.ok ? ((await res.json()) as { version: string; task: string }) : undefined;
      },
      'the example service to answer',
      { timeoutMs: 10_000 },
    );
    expect(answer).toMatchObject({ version: 'from-image', task: 'image-cmd' });
  });

  it('translates BRIDGE port mappings (LITERAL and FROM_OFFER) into the port bindings', async () => {
    const s = await use();
    const literalHost = s.runtime.portRange().to;
    const spec = s.spec('bridge', {
      numPorts: 2,
      container: {
        docker: docker({
          network: 'BRIDGE',
          portMappings: [
            { containerPortType: 'LITERAL', containerPort: 8080, hostPortType: 'FROM_OFFER', hostPort: 1, protocol: 'tcp' },
            { containerPortType: 'FROM_OFFER', containerPort: 0, hostPortType: 'FROM_OFFER', hostPort: 0, protocol: 'tcp' },
            { containerPortType: 'LITERAL', containerPort: 53, hostPortType: 'LITERAL', hostPort: literalHost, protocol: 'udp' },
          ],
        }),
        volumes: [],
      },
    });
    const { handle, ports } = started(await s.runtime.start(spec));
    const c = await inspect(String(handle.container));
    expect(c.HostConfig.NetworkMode).toBe('bridge');
    expect(c.HostConfig.PortBindings).toEqual({
      '8080/tcp': [{ HostIp: '', HostPort: String(ports[1]) }],
      [`${ports[0]}/tcp`]: [{ HostIp: '', HostPort: String(ports[0]) }],
      '53/udp': [{ HostIp: '', HostPort: String(literalHost) }],
    });
    expect(Object.keys(c.Config.ExposedPorts ?? {}).sort()).toEqual([`${ports[0]}/tcp`, '53/udp', '8080/tcp'].sort());
    // The literal host port is held for this task: a second one waits for it.
    const second = await s.runtime.start({ ...spec, taskId: 'bridge-2' });
    expect(second).toEqual({ kind: 'waiting', reason: `Host port(s) ${literalHost} held by another task on d1` });
  });

  it('translates docker run options into the API fields', async () => {
    const s = await use();
    const params = [
      { key: 'env', value: 'FROM_PARAM=1' },
      { key: '--label', value: 'team=web' },
      { key: 'cap-add', value: 'NET_ADMIN' },
      { key: 'ulimit', value: 'nofile=1024:2048' },
      { key: 'shm-size', value: '64m' },
      { key: 'add-host', value: 'db:10.0.0.5' },
      { key: 'read-only', value: '' },
      { key: 'workdir', value: '/tmp' },
    ];
    const { handle } = started(
      await s.runtime.start(s.spec('params', { container: { docker: docker({ dockerParameters: params }), volumes: [] } })),
    );
    const c = await inspect(String(handle.container));
    expect(c.Config.Env).toContain('FROM_PARAM=1');
    expect(c.Config.Labels).toMatchObject({ team: 'web' });
    expect(c.HostConfig).toMatchObject({
      CapAdd: ['NET_ADMIN'],
      Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }],
      ShmSize: 64 * 1024 * 1024,
      ExtraHosts: ['db:10.0.0.5'],
      ReadonlyRootfs: true,
    });
    expect((c.Config as { WorkingDir?: string }).WorkingDir).toBe('/tmp');
  });

  it('SIGKILLs a task that ignores SIGTERM once the grace period is over', async () => {
    const s = await use();
    const { handle } = started(
      await s.runtime.start(s.spec('stubborn', { command: "trap '' TERM; echo ready; while :; do sleep 0.05; done" })),
    );
    await waitFor(() => s.stdout('stubborn').includes('ready'), 'the trap to be set', { timeoutMs: 10_000 });
    const t0 = Date.now();
    await s.runtime.stop(handle, 300);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(s.exits).toEqual([{ taskId: 'stubborn', status: expect.objectContaining({ exitCode: null, signal: 'SIGKILL' }) }]);
    expect(await dockerd.client.inspectContainer(String(handle.container))).toBeUndefined();
  });

  it('keeps a container running across runtimes, re-adopts it and learns an exit that happened while none ran', async () => {
    const s = await use();
    const fifo = path.join(s.ctl, 'survivor');
    const { handle, ports } = started(await s.runtime.start(s.spec('survivor', { numPorts: 1, memoryMb: 100 })));
    await waitFor(() => existsSync(fifo), 'the task to be up', { timeoutMs: 10_000 });
    await s.runtime.close();

    const second = s.make();
    expect(await second.runtime.recover(handle)).toMatchObject({ state: 'running' });
    expect(second.runtime.hostUsage()).toMatchObject({ memoryMb: 100, ports: 1 });
    await second.runtime.close();

    // Ends while no runtime watches; its last words must still reach the sandbox.
    writeFileSync(fifo, '7\n');
    await waitFor(async () => (await inspect(String(handle.container))).State.Status === 'exited', 'the container to exit', {
      timeoutMs: 10_000,
    });

    const third = s.make();
    const found = await third.runtime.find('survivor');
    expect(found).toMatchObject({ taskId: 'survivor', host: 'd1', ports });
    expect(await third.runtime.recover(found!)).toMatchObject({ state: 'exited', exitCode: 7, signal: null });
    expect(third.exits).toEqual([]);
    expect(s.stdout('survivor')).toContain('TASK_ID=survivor');
    expect(s.stdout('survivor').match(/TASK_ID=survivor/g)).toHaveLength(1);
    // Recorded and copied: the container is gone, the sandbox answers.
    expect(await dockerd.client.inspectContainer(String(handle.container))).toBeUndefined();
    expect(await third.runtime.inspect(handle)).toMatchObject({ state: 'exited', exitCode: 7 });
    expect(await third.runtime.find('survivor')).toMatchObject({ taskId: 'survivor' });
  });

  it('reads stdout and stderr apart, by offset, without splitting a character', async () => {
    const s = await use();
    const { handle } = started(
      await s.runtime.start(s.spec('logs', { command: 'printf "héllo\\n"; printf "oops\\n" >&2; printf "done\\n"' })),
    );
    await waitFor(() => s.exits.length > 0, 'the exit', { timeoutMs: 10_000 });
    const all = await s.runtime.logs(handle, 'stdout', 0, 1000);
    expect(all.data).toBe('héllo\ndone\n');
    expect((await s.runtime.logs(handle, 'stderr', 0, 1000)).data).toBe('oops\n');
    const cut = await s.runtime.logs(handle, 'stdout', 0, 2);
    expect(cut).toMatchObject({ data: 'h', nextOffset: 1 });
    const rest = await s.runtime.logs(handle, 'stdout', cut.nextOffset, 1000);
    expect(rest.data).toBe('éllo\ndone\n');
    expect(rest.nextOffset).toBe(all.nextOffset);
  });
});
