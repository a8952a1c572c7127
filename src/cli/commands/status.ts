// `fledge status`: which scheduler leads, since when, and every scheduler's last heartbeat.
// Any server answers it the same way (they read the same store).
import type { Command } from 'commander';
import type { Ctx } from '../context.ts';
import { table } from '../table.ts';

const ago = (ms: number) => (ms < 1000 ? `${Math.round(ms)}ms ago` : `${(ms / 1000).toFixed(1)}s ago`);

export function registerStatus(program: Command, ctx: Ctx): void {
  const status = program
    .command('status')
    .description('which scheduler leads, and every scheduler with its heartbeat')
    .option('--json', 'print the API response');
  status.action(async () => {
    const state = await ctx.client(status).state();
    const view = { leader: state.leader ?? null, schedulers: state.schedulers ?? [] };
    if (ctx.json(status)) return ctx.printJson(view);
    const { leader } = view;
    ctx.print(
      leader
        ? `leader: ${leader.id} at ${leader.url} since ${new Date(leader.since).toISOString()} (epoch ${leader.epoch})${leader.self ? ', the server that answered' : ''}`
        : 'leader: none right now (an election is under way, or the store is unreachable)',
    );
    ctx.print(
      table(
        ['ID', 'URL', 'HOST', 'PID', 'VERSION', 'ROLE', 'HEARTBEAT'],
        view.schedulers.map((s) => [
          s.id,
          s.url,
          s.hostname,
          s.pid,
          s.version,
          s.leader ? 'leader' : s.alive ? 'follower' : 'gone',
          ago(s.heartbeatAgeMs),
        ]),
      ),
    );
  });
}
