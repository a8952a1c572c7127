// `fledge token ...`, `fledge whoami` and `fledge audit`: API tokens and who did what.
import { Option, type Command } from 'commander';
import { ROLES, type Role } from '../../auth/roles.ts';
import type { AuditFilter } from '../../api/client.ts';
import { intArg, UsageError, type Ctx } from '../context.ts';
import { dateTime } from '../format.ts';
import { keyValues, table } from '../table.ts';

export function registerToken(program: Command, ctx: Ctx): void {
  const token = program.command('token').description('API tokens (admin): create, list, revoke');

  const create = token
    .command('create')
    .description('make a token and print it once; only its hash is kept')
    .addOption(new Option('--role <role>', 'what it may do').choices(ROLES).makeOptionMandatory())
    .requiredOption('--name <name>', 'a unique name (shown in the audit log and as the deploy user)')
    .option('--json', 'print the API response');
  create.action(async (opts: { role: Role; name: string }) => {
    const made = await ctx.client(create).createToken(opts.name, opts.role);
    if (ctx.json(create)) return ctx.printJson(made);
    // The token alone on stdout, so `TOKEN=$(fledge token create ...)` works.
    ctx.print(made.token);
    ctx.warn(`token ${made.name} (${made.role}) created; it is shown only now, keep it somewhere safe`);
  });

  const list = token
    .command('list')
    .alias('ls')
    .description('list tokens (never the tokens themselves)')
    .option('--json', 'print the API response');
  list.action(async () => {
    const tokens = await ctx.client(list).listTokens();
    if (ctx.json(list)) return ctx.printJson(tokens);
    ctx.print(
      table(
        ['NAME', 'ROLE', 'CREATED', 'BY', 'LAST USED'],
        tokens.map((t) => [t.name, t.role, dateTime(t.createdAt), t.createdBy, t.lastUsedAt ? dateTime(t.lastUsedAt) : undefined]),
      ),
    );
  });

  const revoke = token
    .command('revoke')
    .argument('<name>')
    .description('revoke a token: it stops working at once')
    .option('--json', 'print the API response');
  revoke.action(async (name: string) => {
    const result = await ctx.client(revoke).revokeToken(name);
    if (ctx.json(revoke)) return ctx.printJson(result);
    ctx.print(`token ${name} revoked`);
  });

  const whoami = program
    .command('whoami')
    .description('the token this CLI sends: its name and role')
    .option('--json', 'print the API response');
  whoami.action(async () => {
    const me = await ctx.client(whoami).whoami();
    if (ctx.json(whoami)) return ctx.printJson(me);
    ctx.print(
      keyValues([
        ['name', me.name],
        ['role', me.role],
        ['auth', me.auth ? 'on' : 'off (--no-auth)'],
      ]),
    );
  });

  const audit = program
    .command('audit')
    .description('mutating API calls, newest first (admin)')
    .option('--request <id>', 'only calls about this request')
    .option('--deploy <id>', 'only calls about this deploy')
    .option('--token-name <name>', 'only calls made with this token')
    .option('--since <time>', 'from this time (ISO 8601 or epoch millis)')
    .option('--until <time>', 'before this time (ISO 8601 or epoch millis)')
    .option('--limit <n>', 'at most this many (default 100, max 1000)', intArg('limit', 1))
    .option('--json', 'print the API response');
  audit.action(async (opts: { request?: string; deploy?: string; tokenName?: string; since?: string; until?: string; limit?: number }) => {
    const filter: AuditFilter = {
      ...(opts.request !== undefined ? { requestId: opts.request } : {}),
      ...(opts.deploy !== undefined ? { deployId: opts.deploy } : {}),
      ...(opts.tokenName !== undefined ? { tokenName: opts.tokenName } : {}),
      ...(opts.since !== undefined ? { since: timeArg('since', opts.since) } : {}),
      ...(opts.until !== undefined ? { until: timeArg('until', opts.until) } : {}),
      ...(opts.limit !== undefined ? { limit: opts.limit } : {}),
    };
    const entries = await ctx.client(audit).audit(filter);
    if (ctx.json(audit)) return ctx.printJson(entries);
    if (entries.length === 0) return ctx.print('no audit records');
    ctx.print(
      table(
        ['TIME', 'TOKEN', 'ROLE', 'CALL', 'REQUEST', 'DEPLOY', 'FROM', 'STATUS'],
        entries.map((e) => [
          dateTime(e.at),
          e.tokenName,
          e.role,
          `${e.method} ${e.path}`,
          e.requestId,
          e.deployId ?? e.taskId,
          e.source,
          e.status,
        ]),
      ),
    );
  });
}

function timeArg(name: string, raw: string): number {
  const n = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isFinite(n)) throw new UsageError(`${name}: not a time (ISO 8601 or epoch millis): ${raw}`);
  return n;
}
