// `fledge serve`: the scheduler itself. Its flags come from the server's option table; the
// server's modules are loaded lazily so client commands never pay for (or depend on) them.
import { Option, type Command } from 'commander';
import { ConfigError, parseOption, SERVER_OPTIONS, type OptionSpec } from '../../config/options.ts';
import { UsageError, type Ctx, type ServeFlags } from '../context.ts';

/** Options every command has: `--data-dir` is where serve keeps state and where the CLI finds admin.token. */
export const GLOBAL_SERVE_OPTIONS = new Set(['dataDir']);

export function serveOption(spec: OptionSpec): Option {
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

/** commander names `--no-auth` `auth` (false when given); the option table calls it `noAuth`. */
function negatedAttribute(spec: OptionSpec): string | undefined {
  if (!spec.flag.startsWith('--no-')) return undefined;
  return spec.flag.slice(5).replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

export function registerServe(program: Command, ctx: Ctx): void {
  const serve = program.command('serve').description('run the Fledge scheduler and its HTTP API');
  for (const spec of SERVER_OPTIONS) if (!GLOBAL_SERVE_OPTIONS.has(spec.key)) serve.addOption(serveOption(spec));
  serve.action(async (opts: Record<string, unknown>, cmd: Command) => {
    const all: Record<string, unknown> = { ...opts };
    for (const key of GLOBAL_SERVE_OPTIONS) all[key] = cmd.optsWithGlobals<Record<string, unknown>>()[key];
    for (const spec of SERVER_OPTIONS as readonly OptionSpec[]) {
      const attr = negatedAttribute(spec);
      if (attr === undefined) continue;
      if (all[attr] === false) all[spec.key] = true;
      delete all[attr];
    }
    // Only flags the user gave, so the server's own defaults and FLEDGE_* variables apply otherwise.
    const flags = Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined)) as ServeFlags;
    if (ctx.io.loadServer) return void (await (await ctx.io.loadServer()).runServe(flags));
    const { runServe } = await import('../../server.ts');
    await runServe(flags);
  });
}
