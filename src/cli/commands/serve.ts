// `fledge serve`: the scheduler itself. Loaded lazily so client commands never pay for (or
// depend on) the server's modules.
import { Option, type Command } from 'commander';
import { intArg, numberArg, type Ctx, type ServeFlags } from '../context.ts';

export function registerServe(program: Command, ctx: Ctx): void {
  program
    .command('serve')
    .description('run the Fledge scheduler and its HTTP API')
    .option('--host <host>', 'API listen address')
    .option('--port <port>', 'API port', intArg('port', 0))
    .option('--lb-port <port>', 'load balancer port (builtin proxy, or the managed HAProxy frontend)', intArg('lb-port', 0))
    .option('--data-dir <dir>', 'where state and task sandboxes live')
    .addOption(new Option('--lb <kind>', 'load balancer').choices(['builtin', 'haproxy', 'none']))
    .option('--haproxy-bin <path>', 'haproxy binary Fledge runs with --lb haproxy (default: haproxy on PATH)')
    .option('--haproxy-socket <path>', 'attach to an HAProxy you run: its stats socket (level admin)')
    .option('--haproxy-config <path>', 'attached HAProxy: the configuration file Fledge writes for it')
    .option('--haproxy-master-socket <path>', 'attached HAProxy: its master CLI socket (reloads for new services)')
    .option(
      '--haproxy-reconcile-seconds <n>',
      'how often HAProxy is compared with Fledge and repaired (0: never)',
      intArg('haproxy-reconcile-seconds', 0),
    )
    .option('--port-range-from <port>', 'first port handed to tasks', intArg('port-range-from', 1))
    .option('--port-range-to <port>', 'last port handed to tasks', intArg('port-range-to', 1))
    .option('--cpus <n>', 'CPUs offered to tasks', numberArg('cpus'))
    .option('--memory-mb <n>', 'memory offered to tasks (MB)', intArg('memory-mb', 1))
    .option('--kill-grace-seconds <n>', 'SIGTERM to SIGKILL grace', intArg('kill-grace-seconds', 0))
    .option('--drain-timeout-seconds <n>', 'how long to drain tasks on shutdown', intArg('drain-timeout-seconds', 0))
    .option('--allow-canary-lb-change', 'run canary deploys that change LB settings without canary instead of rejecting them')
    .option('--check-module <path...>', 'module(s) exporting server-wide acceptance checks (repeatable)')
    .option('--log-level <level>', 'trace, debug, info, warn, error')
    .action(async (opts: ServeFlags) => {
      // Only flags the user gave, so the server's own defaults and config apply otherwise.
      const flags = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as ServeFlags;
      if (ctx.io.loadServer) return void (await (await ctx.io.loadServer()).runServe(flags));
      const { runServe } = await import('../../server.ts');
      await runServe(flags);
    });
}
