// `fledge serve`: the scheduler itself. Its flags come from the server's option table; the
// server's modules are loaded lazily so client commands never pay for (or depend on) them.
import { Option, type Command } from 'commander';
import { ConfigError, parseOption, SERVER_OPTIONS, type OptionSpec } from '../../config/options.ts';
import { UsageError, type Ctx, type ServeFlags } from '../context.ts';

function serveOption(spec: OptionSpec): Option {
  const arg = spec.arg === undefined ? '' : spec.type === 'list' ? ` <${spec.arg}...>` : ` <${spec.arg}>`;
  const option = new Option(`${spec.flag}${arg}`, `${spec.help} [${spec.env}]`);
  if (spec.choices) option.choices(spec.choices);
  else if (spec.type === 'int' || spec.type === 'number') {
    option.argParser((raw: string) => {
      try {
        return parseOption(spec, raw);
      } catch (err) {
        throw new UsageError(err instanceof ConfigError ? err.message : String(err));
      }
    });
  }
  return option;
}

export function registerServe(program: Command, ctx: Ctx): void {
  const serve = program.command('serve').description('run the Fledge scheduler and its HTTP API');
  for (const spec of SERVER_OPTIONS) serve.addOption(serveOption(spec));
  serve.action(async (opts: ServeFlags) => {
    // Only flags the user gave, so the server's own defaults and FLEDGE_* variables apply otherwise.
    const flags = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as ServeFlags;
    if (ctx.io.loadServer) return void (await (await ctx.io.loadServer()).runServe(flags));
    const { runServe } = await import('../../server.ts');
    await runServe(flags);
  });
}
