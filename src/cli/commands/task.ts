// `fledge task ...`: list, inspect, read logs of and kill tasks.
import type { Command } from 'commander';
import type { FledgeClient, TaskView } from '../../api/client.ts';
import { pause, type Ctx } from '../context.ts';
import { checksText, dateTime, healthText, lbText, taskNote } from '../format.ts';
import { keyValues, table } from '../table.ts';

const FAILED = new Set(['TASK_FAILED', 'TASK_LOST', 'TASK_ERROR']);
const LIVE = new Set(['TASK_LAUNCHED', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_CLEANING', 'TASK_KILLING']);

export function registerTask(program: Command, ctx: Ctx): void {
  const task = program.command('task').description('list, inspect, read logs of and kill tasks');

  const list = task
    .command('list')
    .alias('ls')
    .argument('[request]', "only this request's tasks")
    .description('list live tasks')
    .option('--json', 'print the API response');
  list.action(async (requestId: string | undefined) => {
    const client = ctx.client(list);
    const tasks = requestId === undefined ? await client.activeTasks() : await client.requestTasks(requestId);
    if (ctx.json(list)) return ctx.printJson(tasks);
    if (tasks.length === 0) return ctx.print('no live tasks');
    const sorted = [...tasks].sort(
      (a, b) => a.taskId.requestId.localeCompare(b.taskId.requestId) || a.taskId.instanceNo - b.taskId.instanceNo,
    );
    ctx.print(
      table(
        ['TASK', 'INSTANCE', 'DEPLOY', 'STATE', 'HEALTH', 'LB', 'PORTS', 'NOTE'],
        sorted.map((t) => [
          t.taskId.id,
          t.taskId.instanceNo,
          t.taskId.deployId,
          t.state,
          healthText(t),
          lbText(t.lb ?? t.loadBalancerState),
          t.ports?.join(','),
          taskNote(t),
        ]),
      ),
    );
  });

  const TASK_ARG = 'task id, a unique prefix of a live one, or request#instance';
  const get = task.command('get').argument('<task>', TASK_ARG).description('show a task').option('--json', 'print the API response');
  get.action(async (ref: string) => {
    const client = ctx.client(get);
    const t = await ctx.resolveTask(client, ref);
    if (ctx.json(get)) return ctx.printJson(t);
    printTask(ctx, t);
    // A task that ended badly: why, in its own words.
    if (FAILED.has(t.state)) await printStderrTail(ctx, client, t.taskId.id);
  });

  const logs = task
    .command('logs')
    .argument('<task>', TASK_ARG)
    .description("print a task's stdout (or stderr)")
    .option('--stderr', 'read stderr instead of stdout')
    .option('-f, --follow', 'keep printing new output until the task ends (or Ctrl-C)')
    .option('--json', 'print each chunk the API returns as a JSON line');
  logs.action(async (ref: string, opts: { stderr?: boolean; follow?: boolean }) => {
    const client = ctx.client(logs);
    const path = opts.stderr ? 'stderr' : 'stdout';
    let taskId = ref;
    const drain = (offset: number) => drainLog(ctx, client, taskId, path, offset, ctx.json(logs));
    // The first read names the task (by its id, a prefix or request#instance).
    const first = await ctx.withTask(client, ref, async (id) => {
      taskId = id;
      return drain(0);
    });
    if (!opts.follow) return;
    await ctx.interruptible(async (signal) => {
      let offset = first;
      if (!LIVE.has((await client.getTask(taskId)).state)) return void (await drain(offset));
      await pause(ctx.io.pollMillis ?? 500, signal);
      while (!signal.aborted) {
        offset = await drain(offset);
        if (!LIVE.has((await client.getTask(taskId)).state)) {
          // It may have written more between the last read and its end.
          await drain(offset);
          return;
        }
        await pause(ctx.io.pollMillis ?? 500, signal);
      }
    });
  });

  const kill = task
    .command('kill')
    .argument('<task>', TASK_ARG)
    .description('stop a task (out of the LB first); the request replaces it')
    .option('-m, --message <message>', 'why')
    .option('--wait-for-replacement', 'keep it until its replacement is healthy')
    .option('--json', 'print the API response');
  kill.action(async (ref: string, opts: { message?: string; waitForReplacement?: boolean }) => {
    const client = ctx.client(kill);
    const t = await ctx.withTask(client, ref, (taskId) =>
      client.killTask(taskId, {
        message: opts.message,
        ...(opts.waitForReplacement ? { waitForReplacementTask: true } : {}),
      }),
    );
    if (ctx.json(kill)) return ctx.printJson(t);
    const note = taskNote(t);
    ctx.print(`task ${t.taskId.id}: ${t.state}${note ? ` (${note})` : ''}`);
  });
}

/** The last lines of a task's stderr, indented, after a failure (nothing when there are none). */
export async function printStderrTail(ctx: Ctx, client: FledgeClient, taskId: string, lines = 10, indent = ''): Promise<void> {
  const text = await stderrTail(client, taskId, lines);
  if (text.length === 0) return;
  ctx.print(`${indent}stderr (last ${text.length} line${text.length === 1 ? '' : 's'}):`);
  for (const line of text) ctx.print(`${indent}  ${ctx.style.dim(line)}`);
}

export async function stderrTail(client: FledgeClient, taskId: string, lines = 10): Promise<string[]> {
  // Twice: a failure can be recorded a moment before the task's last output is readable.
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const chunk = await client.tailLogs(taskId, 'stderr', 4096);
      const found = chunk.data
        .split('\n')
        .filter((l) => l.trim() !== '')
        .slice(-lines)
        .map((l) => l.slice(0, 300));
      if (found.length > 0) return found;
    } catch {
      // a sandbox already cleaned up: the failure message stands alone
    }
    if (attempt === 0) await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return [];
}

/** Reads from `offset` until the server has nothing more; returns the next offset. */
async function drainLog(
  ctx: Ctx,
  client: FledgeClient,
  taskId: string,
  path: 'stdout' | 'stderr',
  offset: number,
  json: boolean,
): Promise<number> {
  for (;;) {
    const chunk = await client.readLogs(taskId, path, offset);
    if (chunk.data) ctx.io.stdout(json ? `${JSON.stringify(chunk)}\n` : chunk.data);
    // No progress means no more data right now (and guards against a server stuck at one offset).
    if (chunk.data === '' || chunk.nextOffset <= offset) return Math.max(offset, chunk.nextOffset);
    offset = chunk.nextOffset;
  }
}

function printTask(ctx: Ctx, t: TaskView): void {
  ctx.print(
    keyValues([
      ['task', t.taskId.id],
      ['request', t.taskId.requestId],
      ['deploy', t.taskId.deployId],
      ['instance', t.taskId.instanceNo],
      ['host', t.host ?? t.taskId.host],
      ...(t.container ? ([['container', t.container]] as [string, string][]) : []),
      ['state', t.state],
      ['health', `${healthText(t)}${t.health?.message ? `: ${t.health.message}` : ''}`],
      ['checks', checksText(t, Date.now())],
      ['lb', lbText(t.lb ?? t.loadBalancerState)],
      ['ports', t.ports?.join(', ')],
      ['pid', t.pid],
      ['pgid', t.pgid],
      ['started', dateTime(t.taskId.startedAt)],
      ...(t.cleanup
        ? ([['cleanup', `${t.cleanup.reason}${t.cleanup.message ? `: ${t.cleanup.message}` : ''}`]] as [string, string][])
        : []),
      ...(t.waitingReason ? ([['waiting', t.waitingReason]] as [string, string][]) : []),
      ...(t.exitCode !== undefined && t.exitCode !== null ? ([['exit code', String(t.exitCode)]] as [string, string][]) : []),
      ...(t.signal ? ([['signal', t.signal]] as [string, string][]) : []),
    ]),
  );
  const updates = t.taskUpdates ?? [];
  if (updates.length > 0) {
    ctx.print('updates:');
    for (const u of updates) ctx.print(`  ${dateTime(u.timestamp)}  ${u.taskState}${u.statusMessage ? `  ${u.statusMessage}` : ''}`);
  }
  const results = (t.healthcheckResults ?? t.health?.results ?? []).slice(-5);
  if (results.length > 0) {
    ctx.print('last health checks:');
    for (const r of results) {
      const outcome = r.errorMessage ?? (r.statusCode !== undefined ? `HTTP ${r.statusCode}` : '-');
      ctx.print(`  ${dateTime(r.timestamp)}  ${outcome}  ${r.durationMillis} ms${r.startup ? '  (starting)' : ''}`);
    }
  }
}
