// The process runtime with several schedulers: a task started from one data dir is adopted
// by a runtime on another data dir of the same machine (a takeover), found there even when its
// handle was never recorded, and a task of another machine is refused, never signalled.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { killSandboxTasks } from '../../../test/helpers/process-cleanup.ts';
import { baseSpec } from '../contract.case.ts';
import { randomPortRange, tempDataDir, waitFor } from '../test-support.ts';
import { ForeignTaskError, type TaskHandle } from '../types.ts';
import { createProcessRuntime, isAlive, sandboxPath, type ProcessRuntime } from './index.ts';
import { machineIdentity } from './process-runtime.ts';

const SLEEPER = 'mkfifo ctl && read code < ctl; exit "$code"';

describe('process runtime across schedulers and machines', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()?.();
  });

  async function runtimeOn(machine: string, peerDataDirs?: () => Promise<string[]>): Promise<{ runtime: ProcessRuntime; dataDir: string }> {
    const dataDir = await tempDataDir();
    const runtime = createProcessRuntime({
      dataDir,
      machine,
      portRange: randomPortRange(10),
      pollIntervalMs: 25,
      ...(peerDataDirs ? { peerDataDirs } : {}),
    });
    cleanups.push(async () => {
      await runtime.close();
      await killSandboxTasks(dataDir);
      await rm(dataDir, { recursive: true, force: true });
    });
    return { runtime, dataDir };
  }

  it('names this machine by its machine id and hostname', () => {
    expect(machineIdentity()).toMatch(/.+\/.+/);
  });

  it('adopts a task another scheduler of this machine started, from that scheduler’s sandbox', async () => {
    const first = await runtimeOn('machine-a');
    const started = await first.runtime.start(baseSpec('web-t1', { command: SLEEPER }));
    expect(started.kind).toBe('started');
    const handle = (started as { handle: TaskHandle }).handle;
    expect(handle).toMatchObject({ machine: 'machine-a', sandbox: sandboxPath(first.dataDir, 'web-t1') });
    await first.runtime.close(); // the first scheduler is gone; the task runs on

    const exits: string[] = [];
    const second = await runtimeOn('machine-a');
    second.runtime.onExit((id) => exits.push(id));
    const status = await second.runtime.recover(handle);
    expect(status.state).toBe('running');
    const logs = await second.runtime.logs(handle, 'stdout', 0, 100);
    expect(logs.path).toBe(path.join(sandboxPath(first.dataDir, 'web-t1'), 'stdout'));
    await second.runtime.stop(handle, 2_000);
    await waitFor(() => exits.includes('web-t1'), 'the exit of the adopted task');
    expect((await second.runtime.inspect(handle)).state).toBe('exited');
  });

  it('finds a task a dead scheduler started but never recorded, in its data dir', async () => {
    const first = await runtimeOn('machine-a');
    const started = await first.runtime.start(baseSpec('web-t2', { command: SLEEPER }));
    const pid = (started as unknown as { handle: TaskHandle & { pid: number } }).handle.pid;
    const second = await runtimeOn('machine-a', async () => [first.dataDir]);
    const found = await second.runtime.find('web-t2');
    expect(found).toMatchObject({ taskId: 'web-t2', pid, sandbox: sandboxPath(first.dataDir, 'web-t2') });
    expect(await (await runtimeOn('machine-a')).runtime.find('web-t2')).toBeUndefined();
    await second.runtime.stop(found!, 2_000);
  });

  it('refuses a task of another machine: no inspect, no stop, no logs, and the process is left alone', async () => {
    const here = await runtimeOn('machine-a');
    const started = await here.runtime.start(baseSpec('web-t3', { command: SLEEPER }));
    const handle = (started as unknown as { handle: TaskHandle & { pid: number; startTime: number } }).handle;
    const elsewhere = await runtimeOn('machine-b', async () => [here.dataDir]);
    await expect(elsewhere.runtime.recover(handle)).rejects.toBeInstanceOf(ForeignTaskError);
    await expect(elsewhere.runtime.inspect(handle)).rejects.toThrow('runs on machine machine-a; this scheduler runs on machine-b');
    await expect(elsewhere.runtime.stop(handle, 0)).rejects.toBeInstanceOf(ForeignTaskError);
    await expect(elsewhere.runtime.logs(handle, 'stdout', 0, 10)).rejects.toBeInstanceOf(ForeignTaskError);
    // nor is it "found" there (its sandbox says machine-a)
    expect(await elsewhere.runtime.find('web-t3')).toBeUndefined();
    expect(isAlive(handle.pid, handle.startTime)).toBe(true);
    expect(existsSync(path.join(handle.sandbox as string, 'exit'))).toBe(false);
    await here.runtime.stop(handle, 2_000);
  });

  it('ignores a handle whose sandbox is not a task sandbox', async () => {
    const here = await runtimeOn('machine-a');
    const status = await here.runtime.inspect({ taskId: 'web-t4', sandbox: '/etc', machine: 'machine-a' });
    expect(status).toMatchObject({ state: 'lost' });
    expect((status as { message: string }).message).toContain(sandboxPath(here.dataDir, 'web-t4'));
  });
});
