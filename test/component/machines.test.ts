// A scheduler that takes over tasks living on another machine (process runtime, several
// schedulers on one PostgreSQL store): it refuses to manage them instead of guessing — the
// tasks are neither marked lost nor replaced nor stopped — and says so on the task and in the log.
import { afterEach, describe, expect, it } from 'vitest';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

describe('tasks of another machine', () => {
  it('are left alone after a takeover: not lost, not replaced, not stopped, and the task says why', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    const [a, b] = await f.serving('web', 'd1');
    f.runtime.moveToMachine(a!.taskId.id, 'machine-far');
    await f.boot(); // the new leader recovers
    await f.advance(60_000);
    const tasks = await f.tasks('web');
    expect(tasks.map((t) => t.taskId.id).sort()).toEqual([a!.taskId.id, b!.taskId.id].sort());
    const far = tasks.find((t) => t.taskId.id === a!.taskId.id)!;
    expect(far.state).toBe('TASK_RUNNING');
    expect(far.updates.at(-1)?.message).toContain('runs on machine machine-far');
    expect(far.updates.at(-1)?.message).toContain('cannot manage it');
    expect(f.runtime.stopped).toEqual([]);
    // recovering again does not repeat the note
    await f.boot();
    const again = (await f.tasks('web')).find((t) => t.taskId.id === a!.taskId.id)!;
    expect(again.updates.filter((u) => u.message?.includes('machine-far'))).toHaveLength(1);
  });
});
