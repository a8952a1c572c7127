// The behaviour every runtime promises the engine, run against each implementation from its
// own test file. A subject adapts what differs: how a task is made to exit, how its env is seen.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Capacity, PortRange } from './ledger.ts';
import { waitFor } from './test-support.ts';
import type { Runtime, TaskSpec, TaskStatus } from './types.ts';

export interface ContractSubject {
  runtime: Runtime;
  /** made with this capacity and port range */
  capacity: Capacity;
  portRange: PortRange;
  /** a task that runs until stopped or until exit() */
  spec(taskId: string, overrides?: Partial<TaskSpec>): TaskSpec;
  /** the env the task saw, once it is up */
  env(taskId: string): Promise<Record<string, string>>;
  /** make a running task exit by itself with this code */
  exit(taskId: string, code: number): Promise<void>;
  close(): Promise<void>;
}

type Exit = { taskId: string; status: Extract<TaskStatus, { state: 'exited' }> };

export function runtimeContract(name: string, makeSubject: () => Promise<ContractSubject> | ContractSubject): void {
  describe(`${name} runtime contract`, () => {
    let subject: ContractSubject;
    let runtime: Runtime;
    let exits: Exit[];

    beforeEach(async () => {
      subject = await makeSubject();
      runtime = subject.runtime;
      exits = [];
      runtime.onExit((taskId, status) => exits.push({ taskId, status }));
    });

    afterEach(async () => {
      await subject.close();
    });

    const started = async (spec: TaskSpec) => {
      const result = await runtime.start(spec);
      if (result.kind !== 'started') throw new Error(`expected ${spec.taskId} to start, got ${JSON.stringify(result)}`);
      return result;
    };
    const exitsOf = (taskId: string) => exits.filter((e) => e.taskId === taskId);

    it('starts a task once per task id', async () => {
      const spec = subject.spec('once', { numPorts: 1 });
      const [a, b] = await Promise.all([runtime.start(spec), runtime.start(spec)]);
      const c = await runtime.start(spec);
      expect(a.kind).toBe('started');
      expect(b).toEqual(a);
      expect(c).toEqual(a);
      expect((await runtime.inspect((a as Extract<typeof a, { kind: 'started' }>).handle)).state).toBe('running');
    });

    it('gives the task its env plus PORT0.., PORT, TASK_ID, REQUEST_ID, DEPLOY_ID and INSTANCE_NO', async () => {
      const spec = subject.spec('env', { numPorts: 2, env: { GREETING: 'hello world' }, requestId: 'req', deployId: 'dep', instanceNo: 3 });
      const { ports } = await started(spec);
      const env = await subject.env('env');
      expect(ports).toHaveLength(2);
      expect(env).toMatchObject({
        GREETING: 'hello world',
        PORT0: String(ports[0]),
        PORT1: String(ports[1]),
        PORT: String(ports[0]),
        TASK_ID: 'env',
        REQUEST_ID: 'req',
        DEPLOY_ID: 'dep',
        INSTANCE_NO: '3',
      });
    });

    it("gives the task Singularity's variables, and fills its ${TASK_…} placeholders in env values", async () => {
      const spec = subject.spec('sing', {
        requestId: 'req',
        deployId: 'dep',
        instanceNo: 2,
        startedAt: 1700000000000,
        rackId: 'r1',
        estimatedInstanceCount: 4,
        env: {
          WHERE: '${TASK_REQUEST_ID}/${TASK_DEPLOY_ID}/${TASK_INSTANCE_NO}/${TASK_STARTED_AT}/${TASK_RACK_ID}',
          ME: '${TASK_ID}',
          KEEP: '${HOME}',
        },
      });
      await started(spec);
      const env = await subject.env('sing');
      expect(env).toMatchObject({
        TASK_REQUEST_ID: 'req',
        TASK_DEPLOY_ID: 'dep',
        TASK_ID: 'sing',
        TASK_RACK_ID: 'r1',
        AVAILABILITY_ZONE: 'r1',
        ESTIMATED_INSTANCE_COUNT: '4',
        INSTANCE_NO: '2',
        WHERE: 'req/dep/2/1700000000000/r1',
        ME: 'sing',
        KEEP: '${HOME}',
      });
      expect(env.TASK_HOST).toMatch(/./);
    });

    it('never hands one port to two live tasks', async () => {
      const all: number[] = [];
      for (const id of ['p1', 'p2', 'p3']) all.push(...(await started(subject.spec(id, { numPorts: 2 }))).ports);
      expect(new Set(all).size).toBe(6);
      for (const port of all) {
        expect(port).toBeGreaterThanOrEqual(subject.portRange.from);
        expect(port).toBeLessThanOrEqual(subject.portRange.to);
      }
    });

    it('reports an exit once through onExit, with its code', async () => {
      const { handle } = await started(subject.spec('exits'));
      await subject.exit('exits', 3);
      const [exit] = await waitFor(() => exitsOf('exits').length > 0 && exitsOf('exits'), 'the exit');
      expect(exit?.status).toMatchObject({ state: 'exited', exitCode: 3, signal: null });
      expect(await runtime.inspect(handle)).toMatchObject({ state: 'exited', exitCode: 3 });
      // Stopping, releasing or inspecting it afterwards reports nothing new.
      await runtime.stop(handle, 1_000);
      await runtime.release(handle);
      await runtime.stop(handle, 1_000);
      await runtime.inspect(handle);
      expect(exitsOf('exits')).toHaveLength(1);
    });

    it('stops a task and reports its end before stop resolves', async () => {
      const { handle } = await started(subject.spec('stopped'));
      await runtime.stop(handle, 2_000);
      const status = await runtime.inspect(handle);
      expect(status.state).toBe('exited');
      expect(exitsOf('stopped')).toHaveLength(1);
      expect(exitsOf('stopped')[0]?.status).toEqual(status);
    });

    it('resolves stop for an unknown task and for one already gone', async () => {
      await expect(runtime.stop({ taskId: 'never-started' }, 100)).resolves.toBeUndefined();
      const { handle } = await started(subject.spec('twice'));
      await Promise.all([runtime.stop(handle, 2_000), runtime.stop(handle, 2_000)]);
      await runtime.stop(handle, 2_000);
      expect(exitsOf('twice')).toHaveLength(1);
    });

    it('waits when a task does not fit, naming what is short', async () => {
      const { cpus, memoryMb } = subject.capacity;
      await started(subject.spec('big', { memoryMb: memoryMb - 256, cpus: cpus / 2 }));
      const memory = await runtime.start(subject.spec('no-memory', { memoryMb: 512, cpus: 0.1 }));
      expect(memory).toEqual({ kind: 'waiting', reason: `Not enough memory: needs 512 MB, 256 MB free of ${memoryMb} MB` });
      const cpu = await runtime.start(subject.spec('no-cpus', { memoryMb: 1, cpus }));
      expect(cpu.kind).toBe('waiting');
      expect(cpu.kind === 'waiting' && cpu.reason).toMatch(/^Not enough cpus: needs /);
      const ports = await runtime.start(
        subject.spec('no-ports', { memoryMb: 1, cpus: 0.1, numPorts: subject.portRange.to - subject.portRange.from + 2 }),
      );
      expect(ports.kind === 'waiting' && ports.reason).toMatch(/^Not enough ports: needs /);
    });

    it('frees capacity and ports on release', async () => {
      const { memoryMb } = subject.capacity;
      const first = await started(subject.spec('first', { memoryMb, numPorts: 1 }));
      expect((await runtime.start(subject.spec('second', { memoryMb, numPorts: 1 }))).kind).toBe('waiting');
      await runtime.stop(first.handle, 2_000);
      await runtime.release(first.handle);
      await runtime.release(first.handle);
      await started(subject.spec('second', { memoryMb, numPorts: 1 }));
    });

    it('finds a started task by its id and re-attaches to it', async () => {
      const { handle } = await started(subject.spec('found'));
      const found = await runtime.find('found');
      expect(found).toMatchObject({ taskId: 'found' });
      expect(await runtime.find('not-there')).toBeUndefined();
      expect((await runtime.recover(found ?? handle)).state).toBe('running');
      await subject.exit('found', 0);
      await waitFor(() => exitsOf('found').length > 0, 'the exit of the recovered task');
      expect(exitsOf('found')[0]?.status).toMatchObject({ exitCode: 0, signal: null });
    });

    it('purges an ended task (it is gone), never a running one', async () => {
      const running = await started(subject.spec('keeps'));
      await runtime.purge(running.handle);
      expect((await runtime.inspect(running.handle)).state).toBe('running');
      const ended = await started(subject.spec('goes'));
      await subject.exit('goes', 0);
      await waitFor(() => exitsOf('goes').length > 0, 'the exit of the task to purge');
      await runtime.purge(ended.handle);
      await runtime.purge(ended.handle);
      expect(await runtime.find('goes')).toBeUndefined();
      expect((await runtime.logs(ended.handle, 'stdout', 0, 100)).data).toBe('');
    });
  });
}

/** A spec with the fields every test fills the same way. */
export function baseSpec(taskId: string, overrides: Partial<TaskSpec> = {}): TaskSpec {
  return {
    taskId,
    requestId: 'request',
    deployId: 'deploy',
    instanceNo: 1,
    env: {},
    numPorts: 0,
    cpus: 0.1,
    memoryMb: 16,
    ...overrides,
  };
}
