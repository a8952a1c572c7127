// `fledge host ...`: the hosts tasks run on, and their operator state.
import type { Command } from 'commander';
import type { HostView } from '../../api/client.ts';
import type { Ctx } from '../context.ts';
import { dateTime } from '../format.ts';
import { keyValues, table } from '../table.ts';

const cpus = (n: number) => String(Math.round(n * 1000) / 1000);

export function registerHost(program: Command, ctx: Ctx): void {
  const host = program.command('host').description('list hosts and decommission, freeze or activate them');

  const list = host
    .command('list')
    .alias('ls')
    .description('list hosts with state, capacity, reservations and tasks')
    .option('--json', 'print the API response');
  list.action(async () => {
    const hosts = await ctx.client(list).listHosts();
    if (ctx.json(list)) return ctx.printJson(hosts);
    ctx.print(
      table(
        ['HOST', 'KIND', 'ADDRESS', 'STATE', 'CPUS', 'MEMORY MB', 'PORTS', 'TASKS'],
        hosts.map((h) => [
          h.id,
          h.kind,
          h.address,
          h.state,
          h.capacity ? `${cpus(h.reserved.cpus)}/${cpus(h.capacity.cpus)}` : `${cpus(h.reserved.cpus)}/?`,
          h.capacity ? `${h.reserved.memoryMb}/${h.capacity.memoryMb}` : `${h.reserved.memoryMb}/?`,
          h.capacity ? `${h.reserved.ports}/${h.capacity.ports.count}` : `${h.reserved.ports}/?`,
          h.tasks.length,
        ]),
      ),
    );
  });

  const get = host.command('get').argument('<host>').description('show a host').option('--json', 'print the API response');
  get.action(async (hostId: string) => {
    const h = await ctx.client(get).getHost(hostId);
    if (ctx.json(get)) return ctx.printJson(h);
    printHost(ctx, h);
  });

  for (const [action, what] of [
    ['decommission', 'take no new tasks; DECOMMISSIONED once it runs none'],
    ['freeze', 'take no new tasks; running ones stay'],
    ['activate', 'take new tasks again'],
  ] as const) {
    const cmd = host
      .command(action)
      .argument('<host>')
      .description(what)
      .option('-m, --message <message>', 'why')
      .option('--json', 'print the API response');
    cmd.action(async (hostId: string, opts: { message?: string }) => {
      const h = await ctx.client(cmd).changeHost(hostId, action, opts.message);
      if (ctx.json(cmd)) return ctx.printJson(h);
      ctx.warnings(h.warnings);
      ctx.print(`host ${h.id}: ${h.state}`);
    });
  }
}

function printHost(ctx: Ctx, h: HostView): void {
  const attrs = Object.entries(h.attributes).map(([k, v]) => `${k}=${v}`);
  const reserved = Object.entries(h.reservedAttributes ?? {}).map(([k, v]) => `${k}=${v}`);
  ctx.print(
    keyValues([
      ['host', h.id],
      ['kind', h.kind],
      ['address', h.address],
      ['endpoint', h.endpoint],
      ['state', h.state],
      ['set', `${h.adminState.state} at ${dateTime(h.adminState.timestamp)}${h.adminState.message ? `: ${h.adminState.message}` : ''}`],
      ['reachable', h.reachability.reachable ? 'yes' : `no${h.reachability.lastError ? ` (${h.reachability.lastError})` : ''}`],
      ['last answer', dateTime(h.reachability.lastOkAt)],
      ['cpus', h.capacity ? `${cpus(h.reserved.cpus)} of ${cpus(h.capacity.cpus)} reserved` : 'unknown'],
      ['memory', h.capacity ? `${h.reserved.memoryMb} of ${h.capacity.memoryMb} MB reserved` : 'unknown'],
      ['ports', h.capacity ? `${h.reserved.ports} of ${h.capacity.ports.from}-${h.capacity.ports.to} held` : 'unknown'],
      ['rack', h.rackId],
      ['attributes', attrs.length > 0 ? attrs.join(', ') : undefined],
      ...(reserved.length > 0
        ? [['reserved by', `${reserved.join(', ')} (only requests that require or allow it)`] as [string, string]]
        : []),
      ['tasks', h.tasks.length],
    ]),
  );
  for (const t of h.tasks) ctx.print(`  ${t}`);
}
