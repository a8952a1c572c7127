// `fledge deploy ...`: start, plan, steer and follow deploys.
import type { Command } from 'commander';
import type { DeployBody, DeployHistoryView, DeployPlan, FledgeClient, PlanStep, RequestParent } from '../../api/client.ts';
import { intArg, pause, UsageError, type Ctx } from '../context.ts';
import { clockTime, dateTime, decisionText, progressText, requestLine } from '../format.ts';
import { keyValues, table } from '../table.ts';
import { durationText, gateOf, watchDeploy, type WatchOptions } from '../watch.ts';

/** --log and --settle-timeout, shared by `deploy watch` and `deploy create --watch`. */
function watchOptions(cmd: Command): Command {
  return cmd
    .option('--log <file>', 'also append a plain, timestamped log of every change to this file')
    .option(
      '--settle-timeout <seconds>',
      'after the result, wait this long for capacity to settle (0: do not wait)',
      intArg('settle-timeout', 0),
      120,
    );
}

function watchOpts(ctx: Ctx, cmd: Command): WatchOptions {
  const o = cmd.optsWithGlobals<{ log?: string; settleTimeout?: number; server?: string }>();
  const server = cmd.getOptionValueSourceWithGlobals?.('server') === 'cli' ? ` --server ${o.server}` : '';
  return { json: ctx.json(cmd), log: o.log, settleSeconds: o.settleTimeout, command: `fledge${server}` };
}

export function registerDeploy(program: Command, ctx: Ctx): void {
  const deploy = program.command('deploy').description('start, plan, steer and follow deploys');

  /** The file holds a deploy, or the whole POST /api/deploys body. */
  const readBody = async (file: string, opts: { message?: string; unpause?: boolean }): Promise<DeployBody> => {
    const json = await ctx.readJsonFile(file);
    const body = ('deploy' in json ? json : { deploy: json }) as unknown as DeployBody;
    const d = body.deploy as unknown;
    if (typeof d !== 'object' || d === null || typeof body.deploy.requestId !== 'string' || typeof body.deploy.id !== 'string') {
      throw new UsageError(`${file}: the deploy needs string "requestId" and "id"`);
    }
    return {
      ...body,
      ...(opts.message !== undefined ? { message: opts.message } : {}),
      ...(opts.unpause ? { unpauseOnSuccessfulDeploy: true } : {}),
    };
  };

  const create = deploy
    .command('create')
    .addHelpText('after', '\nExample:\n  fledge deploy create -f deploy.json --watch --log deploy.log')
    .description('start a deploy from a JSON file')
    .requiredOption('-f, --file <file>', 'deploy JSON, or a {deploy, message, ...} body ("-" for stdin)')
    .option('-m, --message <message>', 'deploy message')
    .option('--unpause', 'unpause the request when the deploy succeeds')
    .option('-w, --watch', 'follow the deploy until it ends; exit 0 only if it succeeds')
    .option('--json', 'print the API response (with --watch: the final history entry)');
  watchOptions(create);
  create.action(async (opts: { file: string; message?: string; unpause?: boolean; watch?: boolean }) => {
    const body = await readBody(opts.file, opts);
    const client = ctx.client(create);
    const parent = await client.createDeploy(body);
    const json = ctx.json(create);
    if (json && !opts.watch) return ctx.printJson(parent);
    ctx.warnings(parent.warnings);
    if (!json) ctx.print(`deploy ${body.deploy.id} of request ${body.deploy.requestId} started`);
    if (opts.watch) ctx.exitCode = await watchDeploy(ctx, client, body.deploy.requestId, body.deploy.id, watchOpts(ctx, create));
    else ctx.print(requestLine(parent));
  });

  const plan = deploy
    .command('plan')
    .description('dry-run a deploy: the steps it would take; stores nothing')
    .requiredOption('-f, --file <file>', 'deploy JSON, or a {deploy, message, ...} body ("-" for stdin)')
    .option('--json', 'print the API response');
  plan.action(async (opts: { file: string }) => {
    const result = await ctx.client(plan).planDeploy(await readBody(opts.file, {}));
    if (ctx.json(plan)) return ctx.printJson(result);
    printPlan(ctx, result);
  });

  /** Commands on the pending deploy that answer with the request parent. */
  // The API records the intent and answers at once; the loop acts on it milliseconds later. So
  // the command waits (briefly) for the deploy to move, and prints where it stands then.
  const steer = (cmd: Command, call: (requestId: string, deployId: string, opts: Record<string, unknown>) => Promise<RequestParent>) =>
    cmd.option('--json', 'print the API response').action(async (requestId: string, deployId: string, opts: Record<string, unknown>) => {
      const client = ctx.client(cmd);
      const before = await client.deployHistoryEntry(requestId, deployId).catch(() => undefined);
      const parent = await call(requestId, deployId, opts);
      if (ctx.json(cmd)) return ctx.printJson(parent);
      const after = await afterAction(client, requestId, deployId, before);
      ctx.print(requestLine(after.parent ?? parent));
      const entry = after.entry;
      if (!entry) return;
      const w = watchOpts(ctx, cmd);
      if (entry.deployResult) {
        ctx.print(`deploy ${deployId} ${entry.deployResult.deployState}: ${entry.deployResult.message}`);
        return;
      }
      const p = entry.deployProgress;
      if (p) ctx.print(`deploy ${deployId} now at ${progressText(p)}`);
      const gate = gateOf(entry, p);
      if (gate?.kind === 'approval')
        ctx.print(
          `waiting for ${gate.what}${gate.deadline !== undefined ? `, up to ${durationText(gate.deadline - Date.now())}` : ''}: ${w.command} deploy advance ${requestId} ${deployId}`,
        );
      else ctx.print(`follow it: ${w.command} deploy watch ${requestId} ${deployId}`);
    });

  const cancel = deploy.command('cancel').argument('<request>').argument('<deploy>').description('cancel the pending deploy');
  steer(cancel, (r, d) => ctx.client(cancel).cancelDeploy(r, d));

  const advance = deploy
    .command('advance')
    .argument('<request>')
    .argument('<deploy>')
    .description('approve the current step (MANUAL acceptance or a manual check)')
    .option('-m, --message <message>', 'why');
  steer(advance, (r, d, o) => ctx.client(advance).advanceDeploy(r, d, o.message as string | undefined));

  const reject = deploy
    .command('reject')
    .argument('<request>')
    .argument('<deploy>')
    .description('fail the current step')
    .option('-m, --message <message>', 'why');
  steer(reject, (r, d, o) => ctx.client(reject).rejectDeploy(r, d, o.message as string | undefined));

  const update = deploy
    .command('update')
    .argument('<request>')
    .argument('<deploy>')
    .description('jump to a target instance count')
    .requiredOption('--target <n>', 'targetActiveInstances', intArg('target', 1));
  steer(update, (r, d, o) => ctx.client(update).updateDeploy(r, d, o.target as number));

  const pending = deploy.command('pending').description('list pending deploys').option('--json', 'print the API response');
  pending.action(async () => {
    const list = await ctx.client(pending).pendingDeploys();
    if (ctx.json(pending)) return ctx.printJson(list);
    if (list.length === 0) return ctx.print('no pending deploys');
    ctx.print(
      table(
        ['REQUEST', 'DEPLOY', 'STEP', 'PHASE', 'NEW WANTED', 'NEW ACCEPTED', 'STARTED'],
        list.map((p) => [
          p.deployMarker.requestId,
          p.deployMarker.deployId,
          `${p.deployProgress.step}/${p.deployProgress.totalSteps}`,
          p.deployProgress.phase,
          p.deployProgress.targetActiveInstances,
          p.deployProgress.currentActiveInstances,
          dateTime(p.deployMarker.timestamp),
        ]),
      ),
    );
  });

  const history = deploy
    .command('history')
    .argument('<request>')
    .argument('[deploy]')
    .description('past deploys of a request, or one deploy in detail')
    .option('--json', 'print the API response');
  history.action(async (requestId: string, deployId: string | undefined) => {
    const client = ctx.client(history);
    if (deployId === undefined) {
      const list = await client.deployHistory(requestId);
      if (ctx.json(history)) return ctx.printJson(list);
      if (list.length === 0) return ctx.print(`no deploys for request ${requestId}`);
      return ctx.print(
        table(
          ['DEPLOY', 'STATE', 'CREATED', 'BY', 'ENDED', 'MESSAGE'],
          list.map((h) => [
            h.deployMarker.deployId,
            h.deployResult?.deployState ?? h.deployState ?? (h.deployProgress ? 'WAITING' : undefined),
            dateTime(h.deployMarker.timestamp),
            h.deployMarker.user,
            h.deployResult ? dateTime(h.deployResult.timestamp) : undefined,
            h.deployResult?.message ?? h.deployMarker.message,
          ]),
        ),
      );
    }
    const entry = await client.deployHistoryEntry(requestId, deployId);
    if (ctx.json(history)) return ctx.printJson(entry);
    printHistoryEntry(ctx, entry);
  });

  const watch = deploy
    .command('watch')
    .argument('<request>')
    .argument('<deploy>')
    .description('follow a deploy until it ends and capacity settles; exit 0 only if it succeeds')
    .option('--json', 'print only the final history entry')
    .addHelpText(
      'after',
      '\nOn a terminal it redraws a summary (step, tasks per version, traffic split, acceptance, last decisions);\npiped, it prints one line per change. At a gate it prints the commands that continue.',
    );
  watchOptions(watch);
  watch.action(async (requestId: string, deployId: string) => {
    ctx.exitCode = await watchDeploy(ctx, ctx.client(watch), requestId, deployId, watchOpts(ctx, watch));
  });
}

/** Waits up to ~5 s for the deploy to show the loop acted (a new decision, or its end). */
async function afterAction(
  client: FledgeClient,
  requestId: string,
  deployId: string,
  before: DeployHistoryView | undefined,
): Promise<{ entry?: DeployHistoryView; parent?: RequestParent }> {
  const mark = (e: DeployHistoryView | undefined) => {
    const log = e?.decisionLog ?? e?.deployProgress?.decisionLog ?? [];
    const last = log.at(-1);
    return `${log.length}|${last?.at}|${last?.action}|${e?.deployResult?.deployState ?? ''}`;
  };
  const start = mark(before);
  const signal = new AbortController().signal;
  let entry: DeployHistoryView | undefined;
  for (let i = 0; i < 50; i++) {
    entry = await client.deployHistoryEntry(requestId, deployId).catch(() => undefined);
    if (!entry || entry.deployResult || mark(entry) !== start) break;
    await pause(100, signal);
  }
  const parent = await client.getRequest(requestId).catch(() => undefined);
  return { entry, parent };
}

function printPlan(ctx: Ctx, result: DeployPlan): void {
  const s = ctx.style;
  if (result.diff || result.requestDiff) {
    const changes = [...(result.diff ?? []), ...(result.requestDiff ?? []).map((c) => ({ ...c, field: `request.${c.field}` }))];
    ctx.print(
      result.activeDeployId ? `changes against the active deploy ${result.activeDeployId}:` : 'no active deploy: everything is new',
    );
    if (changes.length === 0 && result.activeDeployId) ctx.print('  (none: the same deploy under a new id)');
    for (const c of changes) {
      const show = (v: unknown) => (v === undefined ? '' : JSON.stringify(v).slice(0, 120));
      if (c.kind === 'added') ctx.print(s.ok(`  + ${c.field}: ${show(c.new)}`));
      else if (c.kind === 'removed') ctx.print(s.bad(`  - ${c.field}: ${show(c.old)}`));
      else ctx.print(s.warn(`  ~ ${c.field}: ${show(c.old)} => ${show(c.new)}`));
    }
    ctx.io.stdout('\n');
  }
  ctx.print(
    table(
      ['STEP', 'NEW WANTED', 'STARTS', 'OLD LEFT', 'IN LB NEW/OLD', 'NEW SHARE', 'ACCEPTANCE'],
      result.steps.map((st) => [
        st.step,
        st.targetActiveInstances,
        st.newInstances,
        st.oldInstances,
        st.loadBalanced ? `${st.loadBalanced.new}/${st.loadBalanced.old}` : undefined,
        st.traffic
          ? `${st.traffic.percent} % (weight ${st.traffic.newWeight}/${st.traffic.oldWeight})`
          : st.trafficShare === null || st.trafficShare === undefined
            ? '-'
            : `${Math.round(st.trafficShare * 100)} %`,
        acceptanceText(st.acceptance),
      ]),
    ),
  );
  const words = result.steps.filter((st) => st.description);
  if (words.length > 0) {
    ctx.io.stdout('\n');
    for (const st of words) ctx.print(`  ${st.step}. ${st.description}`);
  }
  ctx.io.stdout('\n');
  if (result.estimate) ctx.print(result.estimate.summary);
  else if (result.etaSeconds) ctx.print(`eta: ${result.etaSeconds.min}–${result.etaSeconds.max} s`);
  ctx.warnings(result.warnings);
}

function acceptanceText(a: PlanStep['acceptance'] | undefined): string {
  if (!a) return '-';
  const extra = [
    a.waitMillis ? `wait ${a.waitMillis / 1000}s` : undefined,
    a.checks && a.checks.length > 0
      ? `checks ${a.checks.map((c) => (typeof c === 'string' ? c : JSON.stringify(c))).join(',')}`
      : undefined,
  ].filter(Boolean);
  return extra.length > 0 ? `${a.mode} (${extra.join(', ')})` : a.mode;
}

function printHistoryEntry(ctx: Ctx, h: DeployHistoryView): void {
  const p = h.deployProgress;
  ctx.print(
    keyValues([
      ['request', h.deployMarker.requestId],
      ['deploy', h.deployMarker.deployId],
      ['created', dateTime(h.deployMarker.timestamp)],
      ['by', h.deployMarker.user],
      ['message', h.deployMarker.message],
      ['state', h.deployResult?.deployState ?? h.deployState ?? 'WAITING'],
      ['progress', p ? `${progressText(p)}${p.canary ? ' (canary)' : ''}` : undefined],
      ...(h.deployResult
        ? ([
            ['result', h.deployResult.message],
            ['ended', dateTime(h.deployResult.timestamp)],
          ] as [string, string][])
        : []),
    ]),
  );
  if (h.actions && h.actions.length > 0) {
    ctx.print('actions:');
    for (const a of h.actions) ctx.print(`  ${clockTime(a.at)} ${a.action} by ${a.user ?? 'unknown'}`);
  }
  const failures = h.deployResult?.deployFailures ?? [];
  if (failures.length > 0) {
    ctx.print('failures:');
    for (const f of failures) ctx.print(`  ${f.reason}${f.taskId ? ` ${f.taskId.id}` : ''}: ${f.message}`);
  }
  const acceptance = p?.acceptanceResultMessageHistory ?? [];
  if (acceptance.length > 0) {
    ctx.print('acceptance:');
    for (const m of acceptance) ctx.print(`  ${m}`);
  }
  const log = h.decisionLog ?? p?.decisionLog ?? [];
  if (log.length > 0) {
    ctx.print('decisions:');
    for (const d of log) ctx.print(`  ${decisionText(d)}`);
  }
}
