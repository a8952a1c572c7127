// `fledge task ...`: list, inspect, read logs of and kill tasks.
import type { Command } from 'commander';
import type { FledgeClient, TaskView } from '../../api/client.ts';
import { pause, type Ctx } from '../context.ts';
import { checksText, dateTime, healthText, lbText, taskNote } from '../format.ts';
import { keyValues, table } from '../table.ts';

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

  const get = task.command('get').argument('<task>').description('show a task').option('--json', 'print the API response');
  get.action(async (taskId: string) => {
    const t = await ctx.client(get).getTask(taskId);
    if (ctx.json(get)) return ctx.printJson(t);
    printTask(ctx, t);
  });

  const logs = task
    .command('logs')
    .argument('<task>')
    .description("print a task's stdout (or stderr)")
    .option('--stderr', 'read stderr instead of stdout')
    .option('-f, --follow', 'keep printing new output until the task ends (or Ctrl-C)')
    .option('--json', 'print each chunk the API returns as a JSON line');
  logs.action(async (taskId: string, opts: { stderr?: boolean; follow?: boolean }) => {
    const client = ctx.client(logs);
    const path = opts.stderr ? 'stderr' : 'stdout';
    const drain = (offset: number) => drainLog(ctx, client, taskId, path, offset, ctx.json(logs));
    if (!opts.follow) {
      await drain(0);
      return;
    }
    await ctx.interruptible(async (signal) => {
      let offset = 0;
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
    .argument('<task>')
    .description('stop a task (out of the LB first); the request replaces it')
    .option('-m, --message <message>', 'why')
    .option('--wait-for-replacement', 'keep it until its replacement is healthy')
    .option('--json', 'print the API response');
  kill.action(async (taskId: string, opts: { message?: string; waitForReplacement?: boolean }) => {
    const t = await ctx.client(kill).killTask(taskId, {
      message: opts.message,
      ...(opts.waitForReplacement ? { waitForReplacementTask: true } : {}),
    });
    if (ctx.json(kill)) return ctx.printJson(t);
    const note = taskNote(t);
    ctx.print(`task ${t.taskId.id}: ${t.state}${note ? ` (${note})` : ''}`);
  });
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
