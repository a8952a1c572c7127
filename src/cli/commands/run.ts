// `fledge request run ID [-- args]` (run now) and `fledge run get|watch` (follow a run).
import type { Command } from 'commander';
import type { RunState } from '../../api/client.ts';
import { UsageError, type Ctx } from '../context.ts';
import { dateTime } from '../format.ts';
import { keyValues } from '../table.ts';

const DONE = new Set(['TASK_FINISHED', 'TASK_FAILED', 'TASK_KILLED', 'TASK_LOST', 'TASK_ERROR']);

export function runLines(s: RunState): string {
  const started = s.taskHistory.find((u) => u.taskState === 'TASK_RUNNING')?.timestamp;
  return keyValues([
    ['run', s.runId],
    ['state', s.pending ? `queued (position ${s.queuePosition ?? '?'})` : (s.currentState ?? '-')],
    ['task', s.taskId?.id ?? '-'],
    ['started', started ? dateTime(started) : '-'],
    ['exit code', s.exitCode === undefined || s.exitCode === null ? '-' : String(s.exitCode)],
    ['duration', s.durationMillis === undefined ? '-' : `${(s.durationMillis / 1000).toFixed(1)}s`],
  ]);
}

/** Exit status of a finished run for `watch`: 0 when it finished, 1 otherwise. */
function exitOf(s: RunState): number {
  return s.currentState === 'TASK_FINISHED' ? 0 : 1;
}

export function registerRun(program: Command, ctx: Ctx): void {
  const request = program.commands.find((c) => c.name() === 'request');
  if (!request) throw new Error('register the request command first');
  const now = request
    .command('run')
    .argument('<id>')
    .argument('[args...]', 'command line arguments for the run (after --)')
    .description('run an ON_DEMAND request now (or a SCHEDULED one out of schedule)')
    .option('--run-id <runId>', 'an id to track the run by (default: one is made)')
    .option('-e, --env <NAME=value...>', 'environment overrides')
    .option('-m, --message <message>', 'why')
    .option('--json', 'print the API response');
  now.action(async (id: string, args: string[], opts: { runId?: string; env?: string[]; message?: string }) => {
    const envOverrides: Record<string, string> = {};
    for (const kv of opts.env ?? []) {
      const eq = kv.indexOf('=');
      if (eq < 1) throw new UsageError(`--env ${kv}: expected NAME=value`);
      envOverrides[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    const parent = await ctx.client(now).runNow(id, {
      ...(opts.runId ? { runId: opts.runId } : {}),
      ...(args.length > 0 ? { commandLineArgs: args } : {}),
      ...(Object.keys(envOverrides).length > 0 ? { envOverrides } : {}),
      ...(opts.message ? { message: opts.message } : {}),
    });
    if (ctx.json(now)) return ctx.printJson(parent);
    ctx.warnings(parent.warnings);
    ctx.print(`queued run ${parent.pendingRequest.runId} of ${id}; follow it with: fledge run watch ${id} ${parent.pendingRequest.runId}`);
  });

  const run = program.command('run').description('follow runs of run-to-completion requests');
  const get = run
    .command('get')
    .argument('<requestId>')
    .argument('<runId>')
    .description('show a run')
    .option('--json', 'print the API response');
  get.action(async (requestId: string, runId: string) => {
    const s = await ctx.client(get).trackRun(requestId, runId);
    if (ctx.json(get)) return ctx.printJson(s);
    ctx.print(runLines(s));
  });
  const watch = run
    .command('watch')
    .argument('<requestId>')
    .argument('<runId>')
    .description('follow a run until it ends; exits 0 when it finished, 1 when it failed')
    .option('--interval-ms <ms>', 'poll interval', '500');
  watch.action(async (requestId: string, runId: string, opts: { intervalMs: string }) => {
    const client = ctx.client(watch);
    let last = '';
    for (;;) {
      const s = await client.trackRun(requestId, runId);
      const line = s.pending ? `queued (position ${s.queuePosition ?? '?'})` : (s.currentState ?? '-');
      if (line !== last) ctx.print(`${new Date().toISOString().slice(11, 19)} ${runId}: ${line}`);
      last = line;
      if (s.currentState && DONE.has(s.currentState)) {
        ctx.print(runLines(s));
        process.exitCode = exitOf(s);
        return;
      }
      await new Promise((r) => setTimeout(r, Math.max(100, Number(opts.intervalMs) || 500)));
    }
  });
}
