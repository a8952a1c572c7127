import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { killSandboxTasks } from '../../../test/helpers/process-cleanup.ts';
import { baseSpec, runtimeContract } from '../contract.case.ts';
import { freePort } from '../../../test/helpers/ports.ts';
import { ArtifactFetcher } from '../artifacts/index.ts';
import { randomPortRange, tempDataDir, waitFor } from '../test-support.ts';
import type { StartResult, TaskSpec, TaskStatus } from '../types.ts';
import { createProcessRuntime, isAlive, readTaskFile, sandboxPath, type ProcessRuntime, type ProcessRuntimeOptions } from './index.ts';
import { ephemeralOverlap } from './ports.ts';
import { parseStat } from './proc.ts';
import { completeUtf8Length } from './process-runtime.ts';
import { parseExitRecord } from './sandbox.ts';

// Dumps its env, then blocks on a FIFO until a test writes the exit code into it.
const CONTROLLED = 'env > env.out && mkfifo ctl && read code < ctl; exit "$code"';

async function disposeDataDir(dataDir: string): Promise<void> {
  await killSandboxTasks(dataDir);
  await rm(dataDir, { recursive: true, force: true });
}

runtimeContract('process', async () => {
  const dataDir = await tempDataDir();
  const capacity = { cpus: 2, memoryMb: 1024 };
  const portRange = randomPortRange(20);
  const runtime = createProcessRuntime({ dataDir, capacity, portRange, pollIntervalMs: 25 });
  const sandbox = (taskId: string) => sandboxPath(dataDir, taskId);
  const ready = (taskId: string) => waitFor(() => existsSync(path.join(sandbox(taskId), 'ctl')), `${taskId} to be up`);
  return {
    runtime,
    capacity,
    portRange,
    spec: (taskId, overrides) => baseSpec(taskId, { command: CONTROLLED, ...overrides }),
    env: async (taskId) => {
      await ready(taskId);
      const text = await readFile(path.join(sandbox(taskId), 'env.out'), 'utf8');
      return Object.fromEntries(
        text
          .split('\n')
          .filter((l) => l.includes('='))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
    },
    exit: async (taskId, code) => {
      await ready(taskId);
      await writeFile(path.join(sandbox(taskId), 'ctl'), `${code}\n`);
    },
    close: async () => {
      await runtime.close();
      await disposeDataDir(dataDir);
    },
  };
});

describe('process runtime', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()?.();
  });

  async function setup(options: Partial<ProcessRuntimeOptions> = {}) {
    const dataDir = await tempDataDir();
    cleanups.push(() => disposeDataDir(dataDir));
    const runtimes: ProcessRuntime[] = [];
    cleanups.push(async () => {
      for (const r of runtimes) await r.close();
    });
    const make = () => {
      const runtime = createProcessRuntime({ dataDir, portRange: randomPortRange(20), pollIntervalMs: 25, ...options });
      runtimes.push(runtime);
      const exits: { taskId: string; status: TaskStatus }[] = [];
      runtime.onExit((taskId, status) => exits.push({ taskId, status }));
      return { runtime, exits };
    };
    return { dataDir, make };
  }

  const spec = (taskId: string, overrides: Partial<TaskSpec>) => baseSpec(taskId, overrides);
  const started = (result: StartResult) => {
    if (result.kind !== 'started') throw new Error(`expected started, got ${JSON.stringify(result)}`);
    return result;
  };
  const stdoutOf = (dataDir: string, taskId: string) => readFileSync(path.join(sandboxPath(dataDir, taskId), 'stdout'), 'utf8');
  /** the pid the task printed first thing (the wrapper's pid is the handle's) */
  const taskPid = (dataDir: string, taskId: string) =>
    waitFor(() => {
      const line = stdoutOf(dataDir, taskId).split('\n')[0];
      return line ? Number(line) : undefined;
    }, `${taskId} to print its pid`);

  it('writes task.json with pid, start time, ports and spec before start returns', async () => {
    const { dataDir, make } = await setup();
    const { runtime } = make();
    const s = spec('recorded', { command: 'exec sleep 30', numPorts: 1 });
    const { handle, ports } = started(await runtime.start(s));
    const file = readTaskFile(sandboxPath(dataDir, 'recorded'));
    expect(file).toMatchObject({ taskId: 'recorded', pid: handle.pid, startTime: handle.startTime, ports, spec: s });
    expect(isAlive(file?.pid ?? 0, file?.startTime ?? 0)).toBe(true);
  });

  it("keeps the sandbox (env in task.json, output, exit record) to its owner, and the task's own umask untouched", async () => {
    // The usual umask: without explicit modes these files would be world-readable.
    const umask = process.umask(0o022);
    try {
      const { dataDir, make } = await setup();
      const { runtime, exits } = make();
      started(await runtime.start(spec('secret', { command: 'echo hi; touch made-by-task', env: { TOKEN: 's3cret' } })));
      await waitFor(() => exits.length > 0, 'the task to end');
      const sandbox = sandboxPath(dataDir, 'secret');
      const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);
      expect(mode(path.join(dataDir, 'tasks'))).toBe('700');
      expect(mode(sandbox)).toBe('700');
      for (const file of ['task.json', 'stdout', 'stderr', 'exit']) expect(mode(path.join(sandbox, file)), file).toBe('600');
      expect(readFileSync(path.join(sandbox, 'task.json'), 'utf8')).toContain('s3cret');
      expect(mode(path.join(sandbox, 'made-by-task'))).toBe('644');
    } finally {
      process.umask(umask);
    }
  });

  it('keeps a task running after the runtime closes, re-adopts it, and learns how it was killed', async () => {
    const { dataDir, make } = await setup();
    const first = make();
    const { handle } = started(
      await first.runtime.start(spec('survivor', { command: 'echo $$; exec sleep 30', memoryMb: 100, numPorts: 2 })),
    );
    await first.runtime.close();

    const second = make();
    const status = await second.runtime.recover(handle);
    expect(status).toMatchObject({ state: 'running', pid: handle.pid });
    expect(second.runtime.usage()).toMatchObject({ memoryMb: 100 });

    process.kill(await taskPid(dataDir, 'survivor'), 'SIGKILL');
    await waitFor(() => second.exits.length > 0, 'the exit on the new runtime');
    expect(second.exits).toEqual([{ taskId: 'survivor', status: expect.objectContaining({ exitCode: null, signal: 'SIGKILL' }) }]);
    expect(first.exits).toEqual([]);
    expect(await second.runtime.inspect(handle)).toMatchObject({ state: 'exited', signal: 'SIGKILL' });
  });

  it('says a task that died at start binding a port someone else took (EADDRINUSE) had its port taken, and skips that port for a while', async () => {
    const { make } = await setup({ portRange: randomPortRange(1) });
    const { runtime, exits } = make();
    // The port is free when the runtime checks, then taken before the task binds it.
    const bindLate = `${JSON.stringify(process.execPath)} -e "setTimeout(() => require('net').createServer().listen(Number(process.env.PORT), '127.0.0.1'), 1000)"`;
    const { ports } = started(await runtime.start(spec('late', { command: bindLate, numPorts: 1 })));
    const thief = net.createServer();
    await new Promise<void>((resolve) => thief.listen(ports[0], '127.0.0.1', resolve));
    await waitFor(() => exits.length > 0, 'the exit');
    expect(exits[0]).toMatchObject({ taskId: 'late', status: { state: 'exited', exitCode: 1, portInUse: true } });
    expect(await runtime.inspect(started(await runtime.start(spec('late', { command: bindLate }))).handle)).toMatchObject({
      portInUse: true,
    });
    await runtime.release({ taskId: 'late' });
    // The taken port (the range's only one) is not handed out again for a while, free or not.
    await new Promise<void>((resolve) => thief.close(() => resolve()));
    expect(await runtime.start(spec('next', { command: 'exec sleep 30', numPorts: 1 }))).toMatchObject({ kind: 'waiting' });
  });

  it('a task that fails for another reason, or late, is not said to have had its port taken', async () => {
    const { make } = await setup();
    const { runtime, exits } = make();
    started(await runtime.start(spec('plain', { command: 'echo "something else broke" >&2; exit 3' })));
    started(await runtime.start(spec('clean', { command: 'echo "EADDRINUSE mentioned, but exit 0" >&2; exit 0' })));
    await waitFor(() => exits.length === 2, 'both exits');
    for (const e of exits) expect(e.status).not.toHaveProperty('portInUse');
  });

  it('learns an exit that happened while no runtime was running', async () => {
    const { dataDir, make } = await setup();
    const first = make();
    const { handle } = started(await first.runtime.start(spec('offline', { command: CONTROLLED })));
    const sandbox = sandboxPath(dataDir, 'offline');
    await waitFor(() => existsSync(path.join(sandbox, 'ctl')), 'the task to be up');
    await first.runtime.close();

    await writeFile(path.join(sandbox, 'ctl'), '7\n');
    await waitFor(() => existsSync(path.join(sandbox, 'exit')), 'the exit record');

    const second = make();
    expect(await second.runtime.recover(handle)).toMatchObject({ state: 'exited', exitCode: 7, signal: null });
    expect(second.exits).toEqual([]);
    expect(first.exits).toEqual([]);
  });

  it('does not take a reused pid for the task', async () => {
    const { dataDir, make } = await setup();
    const first = make();
    const { handle } = started(await first.runtime.start(spec('reused', { command: 'exec sleep 30' })));
    // The tampered record hides the group from the sandbox clean-up: end it here.
    cleanups.push(async () => {
      try {
        process.kill(-(handle.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    });
    await first.runtime.close();
    // Same pid, another start time: as if the task died and the pid went to someone else.
    const file = path.join(sandboxPath(dataDir, 'reused'), 'task.json');
    const record = JSON.parse(readFileSync(file, 'utf8'));
    writeFileSync(file, JSON.stringify({ ...record, startTime: record.startTime + 1 }));

    const second = make();
    expect(await second.runtime.recover({ ...handle, startTime: record.startTime + 1 })).toMatchObject({
      state: 'exited',
      exitCode: null,
      signal: 'UNKNOWN',
    });
  });

  it('reports a task whose sandbox is gone as lost', async () => {
    const { dataDir, make } = await setup();
    const { runtime } = make();
    expect(await runtime.recover({ taskId: 'nowhere', pid: 1, startTime: 1 })).toMatchObject({ state: 'lost' });
    expect(await runtime.find('nowhere')).toBeUndefined();
    expect(existsSync(path.join(dataDir, 'tasks', 'nowhere'))).toBe(false);
  });

  it('ends a task with SIGTERM, which reaches the task itself', async () => {
    const { make } = await setup();
    const { runtime, exits } = make();
    const { handle } = started(await runtime.start(spec('polite', { command: 'exec sleep 30' })));
    const t0 = Date.now();
    await runtime.stop(handle, 5_000);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(exits).toEqual([{ taskId: 'polite', status: expect.objectContaining({ exitCode: null, signal: 'SIGTERM' }) }]);
    expect(isAlive(handle.pid as number, handle.startTime as number)).toBe(false);
  });

  it('SIGKILLs a task that ignores SIGTERM once the grace period is over', async () => {
    const { dataDir, make } = await setup();
    const { runtime, exits } = make();
    const command = `trap '' TERM; echo ready; while :; do sleep 0.05; done`;
    const { handle } = started(await runtime.start(spec('stubborn', { command })));
    await waitFor(() => stdoutOf(dataDir, 'stubborn').includes('ready'), 'the trap to be set');
    const t0 = Date.now();
    await runtime.stop(handle, 300);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(exits).toEqual([{ taskId: 'stubborn', status: expect.objectContaining({ exitCode: null, signal: 'SIGKILL' }) }]);
    expect(await runtime.inspect(handle)).toMatchObject({ state: 'exited', signal: 'SIGKILL' });
  });

  it('runs arguments without a shell', async () => {
    const { dataDir, make } = await setup();
    const { runtime, exits } = make();
    started(await runtime.start(spec('argv', { arguments: ['printf', '%s|%s', '$HOME', 'a b; echo no'] })));
    await waitFor(() => exits.length > 0, 'the exit');
    expect(exits[0]?.status).toMatchObject({ exitCode: 0 });
    expect(stdoutOf(dataDir, 'argv')).toBe('$HOME|a b; echo no');
  });

  it('reports an executable that does not exist as an error and holds nothing for it', async () => {
    const { make } = await setup();
    const { runtime } = make();
    const missing = await runtime.start(spec('missing', { arguments: ['no-such-command-anywhere'], numPorts: 1 }));
    expect(missing).toMatchObject({ kind: 'error', message: expect.stringContaining('no-such-command-anywhere') });
    expect(await runtime.start(spec('missing-path', { arguments: ['/nonexistent/bin/x'] }))).toMatchObject({ kind: 'error' });
    expect(runtime.usage()).toMatchObject({ cpus: 0, memoryMb: 0 });
  });

  it('fills ${TASK_…} placeholders in the command and the arguments', async () => {
    const { dataDir, make } = await setup();
    const { runtime, exits } = make();
    started(
      await runtime.start(
        spec('ph', { command: 'echo "${TASK_INSTANCE_NO} ${TASK_STARTED_AT} $TASK_REQUEST_ID"', startedAt: 42, instanceNo: 5 }),
      ),
    );
    started(await runtime.start(spec('ph2', { arguments: ['printf', '%s', '${TASK_ID}'] })));
    await waitFor(() => exits.length === 2, 'both exits');
    expect(stdoutOf(dataDir, 'ph')).toBe('5 42 request\n');
    expect(stdoutOf(dataDir, 'ph2')).toBe('ph2');
  });

  it('fetches artifacts into the sandbox before the command starts, and fails the start naming a URL it cannot fetch', async () => {
    const port = await freePort();
    const server = createServer((req, res) => {
      if (req.url === '/run.sh') res.writeHead(200).end('#!/bin/sh\necho "from the artifact $1"\n');
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
    const { dataDir, make } = await setup({
      artifacts: new ArtifactFetcher({
        dir: path.join(await tempDataDir(), 'a'),
        maxBytes: 1 << 20,
        timeoutMs: 2000,
        retries: 0,
        cacheMaxBytes: 0,
      }),
    });
    const { runtime, exits } = make();
    const fetch = (url: string) => ({
      url,
      path: 'run.sh',
      extract: true,
      extractTo: '',
      keepArchive: true,
      executable: true,
      cache: false,
    });
    started(await runtime.start(spec('art', { arguments: ['./run.sh', 'x'], artifacts: [fetch(`http://127.0.0.1:${port}/run.sh`)] })));
    await waitFor(() => exits.length > 0, 'the exit');
    expect(stdoutOf(dataDir, 'art')).toBe('from the artifact x\n');
    const before = runtime.usage();
    const failed = await runtime.start(
      spec('art-missing', { command: './run.sh', numPorts: 1, artifacts: [fetch(`http://127.0.0.1:${port}/gone.sh`)] }),
    );
    expect(failed).toEqual({
      kind: 'error',
      message: `Could not fetch artifact http://127.0.0.1:${port}/gone.sh: the server answered 404 Not Found`,
    });
    expect(runtime.usage()).toEqual(before);
  });

  it('reads stdout by byte ranges without splitting a character', async () => {
    const { make } = await setup();
    const { runtime, exits } = make();
    const { handle } = started(await runtime.start(spec('talker', { command: `printf 'hello world\\n'; printf 'caf\\303\\251' >&2` })));
    await waitFor(() => exits.length > 0, 'the exit');
    const first = await runtime.logs(handle, 'stdout', 0, 5);
    expect(first).toMatchObject({ offset: 0, data: 'hello', nextOffset: 5 });
    const rest = await runtime.logs(handle, 'stdout', first.nextOffset, 1_000);
    expect(rest).toMatchObject({ data: ' world\n', nextOffset: 12 });
    expect(await runtime.logs(handle, 'stdout', 12, 1_000)).toMatchObject({ data: '', nextOffset: 12 });
    expect(await runtime.logs(handle, 'stderr', 0, 4)).toMatchObject({ data: 'caf', nextOffset: 3 });
    expect(await runtime.logs(handle, 'stderr', 3, 4)).toMatchObject({ data: 'é', nextOffset: 5 });
  });

  it('skips ports bound by other sockets and serves on the ones it hands out', async () => {
    const { make } = await setup();
    const blocker = net.createServer();
    const range = randomPortRange(6);
    await new Promise<void>((resolve, reject) => {
      blocker.once('error', reject);
      blocker.listen(range.from, '127.0.0.1', resolve);
    });
    cleanups.push(() => new Promise((resolve) => blocker.close(() => resolve())));
    const { runtime } = make();
    const r = createProcessRuntime({ dataDir: runtime.dataDir, portRange: range, pollIntervalMs: 25 });
    cleanups.push(() => r.close());

    const server = `require('http').createServer((q, s) => s.end(process.env.TASK_ID)).listen(+process.env.PORT, '127.0.0.1')`;
    const web = started(await r.start(spec('web', { arguments: [process.execPath, '-e', server], numPorts: 2 })));
    expect(web.ports).not.toContain(range.from);
    const body = await waitFor(
      () =>
        fetch(`http://127.0.0.1:${web.ports[0]}/`).then(
          (res) => res.text(),
          () => undefined,
        ),
      'the task to serve',
    );
    expect(body).toBe('web');

    const other = started(await r.start(spec('other', { command: 'exec sleep 30', numPorts: 3 })));
    expect(other.ports.filter((p) => p === range.from || web.ports.includes(p))).toEqual([]);
    expect(await r.start(spec('none-left', { command: 'exec sleep 30', numPorts: 1 }))).toMatchObject({
      kind: 'waiting',
      reason: expect.stringMatching(/^Not enough ports: needs 1, 0 free/),
    });
  });

  it('holds the ports and capacity of re-adopted tasks', async () => {
    const { dataDir, make } = await setup({ capacity: { cpus: 2, memoryMb: 1024 }, portRange: randomPortRange(4) });
    const first = make();
    const { handle, ports } = started(await first.runtime.start(spec('holder', { command: 'exec sleep 30', memoryMb: 768, numPorts: 2 })));
    await first.runtime.close();

    const second = make();
    // Before recovery the new runtime does not know; after it, it must not hand these out again.
    expect((await second.runtime.recover(handle)).state).toBe('running');
    expect(await second.runtime.start(spec('hungry', { command: 'exec sleep 30', memoryMb: 512 }))).toMatchObject({ kind: 'waiting' });
    const next = started(await second.runtime.start(spec('ported', { command: 'exec sleep 30', memoryMb: 16, numPorts: 2 })));
    expect(next.ports.filter((p) => ports.includes(p))).toEqual([]);
    expect(existsSync(sandboxPath(dataDir, 'ported'))).toBe(true);
  });

  it('returns the live task when started again by a new runtime', async () => {
    const { make } = await setup();
    const first = make();
    const s = spec('again', { command: 'exec sleep 30', numPorts: 1 });
    const a = started(await first.runtime.start(s));
    await first.runtime.close();
    const second = make();
    const b = started(await second.runtime.start(s));
    expect(b.handle).toEqual(a.handle);
    expect(second.runtime.usage()).toMatchObject({ tasks: 1, memoryMb: 16 });
  });

  it('kills what a task left in its group when it exits', async () => {
    const { dataDir, make } = await setup();
    const { runtime, exits } = make();
    started(await runtime.start(spec('parent', { command: 'sleep 30 & echo $!; exit 0' })));
    await waitFor(() => exits.length > 0, 'the exit');
    const orphan = Number(stdoutOf(dataDir, 'parent').trim());
    await waitFor(() => {
      try {
        process.kill(orphan, 0);
        return readFileSync(`/proc/${orphan}/stat`, 'utf8').includes(') Z');
      } catch {
        return true;
      }
    }, 'the orphan to be killed');
  });
});

describe('process runtime: the whole process tree', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()?.();
  });

  async function runtimeWith(options: Partial<ProcessRuntimeOptions> = {}, dataDir?: string) {
    const dir = dataDir ?? (await tempDataDir());
    if (!dataDir) cleanups.push(() => disposeDataDir(dir));
    const runtime = createProcessRuntime({ dataDir: dir, portRange: randomPortRange(10), pollIntervalMs: 25, ...options });
    cleanups.push(() => runtime.close());
    const exits: string[] = [];
    runtime.onExit((taskId) => exits.push(taskId));
    return { dataDir: dir, runtime, exits };
  }
  const startedHandle = async (runtime: ProcessRuntime, taskId: string, command: string) => {
    const result = await runtime.start(baseSpec(taskId, { command }));
    if (result.kind !== 'started') throw new Error(`expected started, got ${JSON.stringify(result)}`);
    return result.handle;
  };
  /** the pid of a child the task started with setsid (it leaves the task's process group) */
  const escapee = async (dataDir: string, taskId: string) => {
    const pid = await waitFor(() => {
      const line = readFileSync(path.join(sandboxPath(dataDir, taskId), 'stdout'), 'utf8').split('\n')[0];
      return line ? Number(line) : undefined;
    }, `${taskId} to print its child's pid`);
    await waitFor(() => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep'), 'the child to exec sleep');
    return pid;
  };
  const alive = (pid: number) => {
    try {
      return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
    } catch {
      return false;
    }
  };
  const pgidOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]);
  const SETSID_CHILD = 'setsid sleep 300 & echo $!; exec sleep 300';

  it.each([
    ['with a per-task cgroup where the machine allows one', {}],
    ['with the environment mark alone (no cgroups)', { cgroups: false }],
  ])('stop() ends a child that left the process group with setsid, %s', async (_what, options) => {
    const { dataDir, runtime } = await runtimeWith(options);
    const handle = await startedHandle(runtime, 'tree', SETSID_CHILD);
    const child = await escapee(dataDir, 'tree');
    expect(pgidOf(child)).not.toBe(handle.pid);
    await runtime.stop(handle, 2_000);
    expect(alive(child)).toBe(false);
  });

  it('knows a setsid child after a restart: the re-adopted task is stopped whole', async () => {
    const { dataDir, runtime } = await runtimeWith();
    const handle = await startedHandle(runtime, 'adopted-tree', SETSID_CHILD);
    const child = await escapee(dataDir, 'adopted-tree');
    await runtime.close();
    const second = await runtimeWith({}, dataDir);
    expect(await second.runtime.recover(handle)).toMatchObject({ state: 'running' });
    await second.runtime.stop(handle, 2_000);
    expect(alive(child)).toBe(false);
  });

  it('kills a setsid child the task left behind when the task itself exits', async () => {
    const { dataDir, runtime, exits } = await runtimeWith();
    await startedHandle(runtime, 'leaver', 'setsid sleep 300 & echo $!; sleep 0.3; exit 3');
    const child = await escapee(dataDir, 'leaver');
    await waitFor(() => exits.includes('leaver'), 'the exit');
    await waitFor(() => !alive(child), 'the setsid child to be killed');
  });

  it('reports the service process as the task pid, and puts the task in its own cgroup when it can', async () => {
    const { runtime } = await runtimeWith();
    const handle = await startedHandle(runtime, 'service', 'exec sleep 300');
    const servicePid = handle.servicePid as number;
    expect(servicePid).toBeTypeOf('number');
    expect(servicePid).not.toBe(handle.pid);
    // the service process is the command itself once its shell has exec'd it
    await waitFor(() => readFileSync(`/proc/${servicePid}/cmdline`, 'utf8') === 'sleep\u0000300\u0000', 'the service to exec sleep');
    expect(readFileSync(`/proc/${servicePid}/environ`, 'utf8')).toContain('FLEDGE_TASK_ID=service\u0000');
    if (runtime.usesCgroups) {
      const procs = readFileSync(path.join(handle.cgroup as string, 'cgroup.procs'), 'utf8')
        .split('\n')
        .map(Number);
      expect(procs).toEqual(expect.arrayContaining([handle.pid, servicePid]));
    }
    await runtime.stop(handle, 2_000);
    if (runtime.usesCgroups) expect(existsSync(handle.cgroup as string)).toBe(false);
  });
});

describe('process runtime helpers', () => {
  it('finds where a task port range overlaps the ephemeral range', async () => {
    const file = path.join(await tempDataDir(), 'range');
    writeFileSync(file, '32768\t60999\n');
    expect(ephemeralOverlap({ from: 31000, to: 31999 }, file)).toBeUndefined();
    expect(ephemeralOverlap({ from: 32000, to: 33000 }, file)).toEqual({ from: 32768, to: 33000, ephemeral: { from: 32768, to: 60999 } });
    expect(ephemeralOverlap({ from: 60000, to: 61000 }, file)).toMatchObject({ from: 60000, to: 60999 });
    expect(ephemeralOverlap({ from: 40000, to: 40010 }, path.join(file, 'missing'))).toBeUndefined();
  });

  it('parses /proc stat lines whose command holds spaces and parens', () => {
    const line = '4242 (we(i)rd ) name) S 1 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 987654 1000 100';
    expect(parseStat(4242, line)).toEqual({ pid: 4242, state: 'S', ppid: 1, pgrp: 4242, startTime: 987654 });
  });

  it('reads exit records: codes, 128+n as signals, runtime-written signals, partial writes', () => {
    expect(parseExitRecord('0\n', 1)).toEqual({ state: 'exited', exitCode: 0, signal: null, finishedAt: 1 });
    expect(parseExitRecord('137\n', 1)).toEqual({ state: 'exited', exitCode: null, signal: 'SIGKILL', finishedAt: 1 });
    expect(parseExitRecord('UNKNOWN\n', 1)).toEqual({ state: 'exited', exitCode: null, signal: 'UNKNOWN', finishedAt: 1 });
    expect(parseExitRecord('', 1)).toBeUndefined();
  });

  it('never ends a log chunk inside a UTF-8 character', () => {
    const bytes = Buffer.from('a€', 'utf8');
    expect(completeUtf8Length(bytes)).toBe(4);
    expect(completeUtf8Length(bytes.subarray(0, 3))).toBe(1);
    expect(completeUtf8Length(bytes.subarray(0, 2))).toBe(1);
  });
});
