// `fledge state`: the server's counts at a glance.
import type { Command } from 'commander';
import type { Ctx } from '../context.ts';
import { keyValues } from '../table.ts';

export function registerState(program: Command, ctx: Ctx): void {
  const state = program.command('state').description('request, deploy and task counts').option('--json', 'print the API response');
  state.action(async () => {
    const counts = await ctx.client(state).state();
    if (ctx.json(state)) return ctx.printJson(counts);
    const numbers = Object.entries(counts).filter((e): e is [string, number] => typeof e[1] === 'number');
    ctx.print(keyValues(numbers.map(([k, v]) => [k.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`), v])));
  });
}
