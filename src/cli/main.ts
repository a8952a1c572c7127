// The `fledge` command line. `runCli` is the whole program minus the process: tests call it
// in-process with their own writers; bin/fledge.js calls `main()` once.
import { Command, CommanderError } from 'commander';
import { FledgeApiError, FledgeConnectionError, type ApiErrorDetail } from '../api/client.ts';
import { registerDeploy } from './commands/deploy.ts';
import { registerHost } from './commands/host.ts';
import { registerRequest } from './commands/request.ts';
import { registerRun } from './commands/run.ts';
import { registerServe } from './commands/serve.ts';
import { registerState } from './commands/state.ts';
import { registerStatus } from './commands/status.ts';
import { registerStore } from './commands/store.ts';
import { registerTask } from './commands/task.ts';
import { registerToken } from './commands/token.ts';
import { Ctx, NotFoundError, UsageError, type CliIo } from './context.ts';
import { EXIT, EXIT_CODES_HELP, exitForStatus } from './exit-codes.ts';

export type { CliIo } from './context.ts';

export const DEFAULT_SERVER = 'http://127.0.0.1:7099';

/** Runs one command line (`argv` without node and script); resolves to the exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const ctx = new Ctx(io);
  const program = buildProgram(ctx);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    return report(ctx, err);
  }
}

function buildProgram(ctx: Ctx): Command {
  const program = new Command('fledge')
    .description('Fledge: a service scheduler with phased canary deploys (Singularity API)')
    .version('0.1.0')
    .option('--server <url|host:port>', 'Fledge API URL (env FLEDGE_URL)', ctx.env.FLEDGE_URL || DEFAULT_SERVER)
    .option('--token <token>', 'bearer token (env FLEDGE_TOKEN; default: the one in <data-dir>/admin.token)')
    .option(
      '--data-dir <dir>',
      'serve: where state lives; store backup: whose fledge.db; others: where admin.token is [FLEDGE_DATA_DIR] (default ./.fledge)',
    )
    .configureHelp({ showGlobalOptions: true })
    .addHelpText('after', EXIT_CODES_HELP)
    .showHelpAfterError('(run with --help for usage)')
    // Settings set before .command() are inherited by every subcommand.
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.io.stdout(s),
      writeErr: (s) => ctx.io.stderr(s),
    });
  registerServe(program, ctx);
  registerRequest(program, ctx);
  registerRun(program, ctx);
  registerDeploy(program, ctx);
  registerTask(program, ctx);
  registerState(program, ctx);
  registerStatus(program, ctx);
  registerStore(program, ctx);
  registerHost(program, ctx);
  registerToken(program, ctx);
  return program;
}

/** Prints an error the way scripts expect: `error: ...` on stderr and an exit code per kind (exit-codes.ts). */
function report(ctx: Ctx, err: unknown): number {
  if (err instanceof CommanderError) {
    // commander has printed the message (or the help) already.
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (err instanceof FledgeApiError) {
    ctx.warn(`error: ${err.message}`);
    for (const d of err.details) ctx.warn(`  ${detailText(d)}`);
    if (err.status === 401) ctx.warn(`  ${ctx.tokenHint()}`);
    return exitForStatus(err.status);
  }
  if (err instanceof UsageError) {
    ctx.warn(`error: ${err.message}`);
    return EXIT.usage;
  }
  if (err instanceof NotFoundError) {
    ctx.warn(`error: ${err.message}`);
    return EXIT.notFound;
  }
  if (err instanceof FledgeConnectionError) {
    ctx.warn(`error: ${err.message}`);
    return EXIT.unreachable;
  }
  ctx.warn(`error: ${err instanceof Error ? err.message : String(err)}`);
  return EXIT.failed;
}

function detailText(d: ApiErrorDetail): string {
  if (d.field || d.rule) return `${d.field ?? '?'}: ${d.rule ?? ''}${d.message ? ` (${d.message})` : ''}`.trimEnd();
  if (d.message) return d.message;
  return JSON.stringify(d);
}

/** The `fledge` process: bin/fledge.js calls this once and exits with what it returns. */
export async function main(): Promise<number> {
  // `fledge task list | head`: a closed pipe ends the command quietly, as for any Unix tool.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  return runCli(process.argv.slice(2), {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
  });
}
