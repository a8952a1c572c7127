import { describe, expect, it } from 'vitest';
import { baseSpec, runtimeContract } from '../contract.case.ts';
import { createFakeRuntime } from './index.ts';

const capacity = { cpus: 2, memoryMb: 1024 };
const portRange = { from: 31000, to: 31009 };

runtimeContract('fake', () => {
  const runtime = createFakeRuntime({ capacity, portRange });
  return {
    runtime,
    capacity,
    portRange,
    spec: (taskId, overrides) => baseSpec(taskId, { command: 'serve', ...overrides }),
    env: async (taskId) => runtime.env(taskId) ?? {},
    exit: async (taskId, code) => runtime.exit(taskId, code),
    close: () => runtime.close(),
  };
});

describe('fake runtime', () => {
  const spec = (taskId: string, deployId = 'd1') => baseSpec(taskId, { deployId, command: 'serve', numPorts: 2 });

  it('assigns the lowest free ports, reusing released ones', async () => {
    const fake = createFakeRuntime({ portRange: { from: 100, to: 199 } });
    const a = await fake.start(spec('a'));
    const b = await fake.start(spec('b'));
    expect(a.kind === 'started' && a.ports).toEqual([100, 101]);
    expect(b.kind === 'started' && b.ports).toEqual([102, 103]);
    if (a.kind === 'started') await fake.release(a.handle);
    const c = await fake.start(spec('c'));
    expect(c.kind === 'started' && c.ports).toEqual([100, 101]);
  });

  it('follows scripts per task id over scripts per deploy id', async () => {
    const fake = createFakeRuntime();
    fake.script({ deployId: 'broken' }, { error: 'No such file' });
    fake.script({ taskId: 'special' }, { waiting: 'Not enough unicorns' });
    expect(await fake.start(spec('x', 'broken'))).toEqual({ kind: 'error', message: 'No such file' });
    expect(await fake.start(spec('special', 'broken'))).toEqual({ kind: 'waiting', reason: 'Not enough unicorns' });
    fake.script({ taskId: 'special' }, 'start');
    expect((await fake.start(spec('special', 'broken'))).kind).toBe('started');
    expect(fake.started).toEqual(['special']);
  });

  it('crashes a scripted task right after start resolves', async () => {
    const fake = createFakeRuntime();
    const exits: [string, number | null][] = [];
    fake.onExit((id, status) => exits.push([id, status.exitCode]));
    fake.script({ deployId: 'crashy' }, { exit: 1 });
    const result = await fake.start(spec('c1', 'crashy'));
    expect(result.kind).toBe('started');
    await Promise.resolve();
    expect(exits).toEqual([['c1', 1]]);
    expect(fake.running()).toEqual([]);
  });

  it('records stops and ends the task with SIGTERM', async () => {
    const fake = createFakeRuntime({ now: () => 42 });
    const exits: unknown[] = [];
    fake.onExit((id, status) => exits.push({ id, status }));
    const result = await fake.start(spec('s1'));
    if (result.kind !== 'started') throw new Error('not started');
    await fake.stop(result.handle, 10);
    await fake.stop({ taskId: 'unknown' }, 10);
    expect(fake.stopped).toEqual(['s1', 'unknown']);
    expect(exits).toEqual([{ id: 's1', status: { state: 'exited', exitCode: null, signal: 'SIGTERM', finishedAt: 42 } }]);
  });

  it('exits every running task of a deploy', async () => {
    const fake = createFakeRuntime();
    await fake.start(spec('a', 'old'));
    await fake.start(spec('b', 'old'));
    await fake.start(spec('c', 'new'));
    fake.exitDeploy('old', 0);
    expect(fake.running()).toEqual(['c']);
  });

  it('keeps tasks across a close and reports a lost one as lost', async () => {
    const fake = createFakeRuntime();
    const seen: string[] = [];
    fake.onExit((id) => seen.push(`old:${id}`));
    const a = await fake.start(spec('a'));
    await fake.start(spec('b'));
    await fake.close();
    fake.onExit((id) => seen.push(`new:${id}`));
    if (a.kind !== 'started') throw new Error('not started');
    expect((await fake.recover(a.handle)).state).toBe('running');
    fake.exit('a', 0);
    fake.lose('b');
    expect(await fake.recover({ taskId: 'b' })).toEqual({ state: 'lost', message: 'The task vanished' });
    expect(await fake.find('b')).toBeUndefined();
    expect(seen).toEqual(['new:a']);
  });

  it('serves written logs by byte offsets', async () => {
    const fake = createFakeRuntime();
    await fake.start(spec('l'));
    fake.writeLog('l', 'stdout', 'hello world');
    const first = await fake.logs({ taskId: 'l' }, 'stdout', 0, 5);
    expect(first).toMatchObject({ data: 'hello', nextOffset: 5 });
    expect(await fake.logs({ taskId: 'l' }, 'stdout', first.nextOffset, 100)).toMatchObject({ data: ' world', nextOffset: 11 });
  });
});
