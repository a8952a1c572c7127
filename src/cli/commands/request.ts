// `fledge request ...`: create, inspect and steer requests.
import type { Command } from 'commander';
import type { FledgeClient, RequestInput, RequestParent } from '../../api/client.ts';
import { intArg, UsageError, type Ctx } from '../context.ts';
import { dateTime, instancesText, pendingText, requestLine } from '../format.ts';
import { keyValues, table } from '../table.ts';

export function registerRequest(program: Command, ctx: Ctx): void {
  const request = program.command('request').description('create, inspect and steer requests');

  /** A write that answers with the request parent: JSON, or one summary line. */
  const write = (cmd: Command, call: (client: FledgeClient) => Promise<RequestParent>) => async () => {
    const parent = await call(ctx.client(cmd));
    if (ctx.json(cmd)) return ctx.printJson(parent);
    ctx.warnings(parent.warnings);
    ctx.print(requestLine(parent));
  };

  const create = request
    .command('create')
    .description('create or update a request from a JSON file')
    .requiredOption('-f, --file <file>', 'request JSON ("-" for stdin)')
    .option('--json', 'print the API response');
  create.action(async (opts: { file: string }) => {
    const body = await ctx.readJsonFile(opts.file);
    if (typeof body.id !== 'string') throw new UsageError(`${opts.file}: a request needs a string "id"`);
    await write(create, (c) => c.createRequest(body as RequestInput))();
  });

  const list = request.command('list').alias('ls').description('list requests').option('--json', 'print the API response');
  list.action(async () => {
    const parents = await ctx.client(list).listRequests();
    if (ctx.json(list)) return ctx.printJson(parents);
    if (parents.length === 0) return ctx.print('no requests');
    ctx.print(
      table(
        ['ID', 'TYPE', 'STATE', 'HEALTHY', 'ACTIVE DEPLOY', 'PENDING DEPLOY'],
        parents.map((p) => [
          p.request.id,
          p.request.requestType,
          p.state,
          instancesText(p),
          p.requestDeployState?.activeDeploy?.deployId ?? p.activeDeploy?.id,
          pendingText(p.pendingDeployState),
        ]),
      ),
    );
  });

  const get = request.command('get').argument('<id>').description('show a request').option('--json', 'print the API response');
  get.action(async (id: string) => {
    const p = await ctx.client(get).getRequest(id);
    if (ctx.json(get)) return ctx.printJson(p);
    const g = p.taskIds;
    ctx.print(
      keyValues([
        ['id', p.request.id],
        ['type', p.request.requestType],
        ['state', p.state],
        ['instances', `${instancesText(p, ' healthy')}${p.instanceCounts ? `, ${p.instanceCounts.total} running` : ''}`],
        ['load balanced', p.request.loadBalanced ? 'yes' : 'no'],
        ['active deploy', p.requestDeployState?.activeDeploy?.deployId ?? p.activeDeploy?.id],
        ['pending deploy', pendingText(p.pendingDeployState)],
        ...(p.bounce ? ([['bouncing since', dateTime(p.bounce.startedAt)]] as [string, string][]) : []),
        ...(p.request.schedule || p.request.quartzSchedule
          ? ([
              [
                'schedule',
                `${p.request.quartzSchedule ?? p.request.schedule}${p.request.scheduleTimeZone ? ` (${p.request.scheduleTimeZone})` : ''}`,
              ],
            ] as [string, string][])
          : []),
        ...(p.nextRunAt !== undefined ? ([['next run', dateTime(p.nextRunAt)]] as [string, string][]) : []),
        ...(p.pendingRequests?.length ? ([['queued runs', p.pendingRequests.map((q) => q.runId).join(', ')]] as [string, string][]) : []),
        ...(p.skippedRuns
          ? ([['skipped runs', `${p.skippedRuns.count} (last due ${dateTime(p.skippedRuns.lastDueAt)})`]] as [string, string][])
          : []),
        [
          'tasks',
          g
            ? `healthy ${g.healthy.length}, not yet healthy ${g.notYetHealthy.length}, pending ${g.pending.length}, cleaning ${g.cleaning.length}, load balanced ${g.loadBalanced.length}`
            : '-',
        ],
      ]),
    );
  });

  const scale = request
    .command('scale')
    .argument('<id>')
    .argument('<instances>', 'new instance count', intArg('instances', 0))
    .description('change the instance count')
    .option('-m, --message <message>', 'why')
    .option('--json', 'print the API response');
  scale.action(async (id: string, instances: number, opts: { message?: string }) =>
    write(scale, (c) => c.scale(id, instances, opts.message))(),
  );

  const simple = (name: string, description: string, call: (c: FledgeClient, id: string, message?: string) => Promise<RequestParent>) => {
    const cmd = request
      .command(name)
      .argument('<id>')
      .description(description)
      .option('-m, --message <message>', 'why')
      .option('--json', 'print the API response');
    cmd.action(async (id: string, opts: { message?: string }) => write(cmd, (c) => call(c, id, opts.message))());
  };
  simple('pause', "stop the request's tasks and hold it", (c, id, message) => c.pause(id, { message }));
  simple('unpause', 'resume a paused request', (c, id, message) => c.unpause(id, { message }));
  simple('bounce', 'replace every task, new before old', (c, id, message) => c.bounce(id, { message }));
  simple('delete', 'stop its tasks (out of the LB first) and delete it', (c, id, message) => c.deleteRequest(id, { message }));
  const rollback = request
    .command('rollback')
    .argument('<id>')
    .description('redeploy the newest successful deploy before the active one (or --deploy), atomically')
    .option('--deploy <deploy>', 'roll back to this earlier successful deploy')
    .option('-m, --message <message>', 'why')
    .option('--json', 'print the API response');
  rollback.action(async (id: string, opts: { message?: string; deploy?: string }) => {
    const parent = await ctx.client(rollback).rollback(id, {
      ...(opts.message !== undefined ? { message: opts.message } : {}),
      ...(opts.deploy !== undefined ? { deployId: opts.deploy } : {}),
    });
    if (ctx.json(rollback)) return ctx.printJson(parent);
    ctx.warnings(parent.warnings);
    // The rollback is a new deploy: name what it restores and how to follow it.
    const pending = parent.pendingDeployState?.deployMarker.deployId;
    ctx.print(`rolling ${id} back to ${parent.rollbackTo ?? '?'}${pending ? ` as deploy ${pending}` : ''}`);
    ctx.print(requestLine(parent));
    if (pending) ctx.print(`follow it: fledge deploy watch ${id} ${pending}`);
  });
}
