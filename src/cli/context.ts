// What every command shares: the I/O it may use (injected so tests run the CLI in-process),
// the client for --server, and how results and warnings are printed.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { FledgeClient } from '../api/client.ts';
import type { OptionInput } from '../config/options.ts';

/** `serve` flags: the server's option table (src/config/options.ts). */
export type ServeFlags = OptionInput;

export interface ServerModule {
  runServe(flags: ServeFlags): Promise<unknown>;
}

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** `-f -`; defaults to process.stdin */
  readStdin?(): Promise<string>;
  /** FLEDGE_URL, FLEDGE_TOKEN, FLEDGE_DATA_DIR; defaults to process.env */
  env?: Record<string, string | undefined>;
  /** where a relative --data-dir (./.fledge by default) is; defaults to process.cwd() */
  cwd?: string;
  /** stops --watch and logs -f; without it Ctrl-C does */
  signal?: AbortSignal;
  /** poll interval of `task logs -f` (ms) */
  pollMillis?: number;
  /** pause before reconnecting a dropped event stream (ms) */
  reconnectMillis?: number;
  /** replaces `import('../server.ts')` */
  loadServer?(): Promise<ServerModule>;
}

/** Bad input on the command line or in a file: exit code 2 like a 4xx. */
export class UsageError extends Error {}

export class Ctx {
  exitCode = 0;

  constructor(readonly io: CliIo) {}

  get env(): Record<string, string | undefined> {
    return this.io.env ?? process.env;
  }

  /** Where the token was looked for, said with a 401 so the user knows what to fix. */
  #tokenSource = 'no token was sent';

  client(cmd: Command): FledgeClient {
    const { server, token, dataDir } = cmd.optsWithGlobals<{ server: string; token?: string; dataDir?: string }>();
    // Not a commander default: that would print the secret in --help.
    let bearer = token;
    this.#tokenSource = 'the token given with --token was refused';
    if (bearer === undefined && this.env.FLEDGE_TOKEN) {
      bearer = this.env.FLEDGE_TOKEN;
      this.#tokenSource = 'the token in FLEDGE_TOKEN was refused';
    }
    if (bearer === undefined) {
      // The admin token `fledge serve` wrote into the data dir it would use here.
      const file = join(resolve(this.io.cwd ?? process.cwd(), dataDir ?? (this.env.FLEDGE_DATA_DIR || './.fledge')), 'admin.token');
      const read = readTokenFile(file);
      bearer = read.token;
      this.#tokenSource =
        bearer === undefined
          ? `no token: pass --token, set FLEDGE_TOKEN, or point --data-dir (FLEDGE_DATA_DIR) at the server's data dir (${file}: ${read.why})`
          : `the admin token in ${file} was refused (is it this server's data dir?)`;
    }
    return new FledgeClient(server, bearer ? { token: bearer } : {});
  }

  tokenHint(): string {
    return this.#tokenSource;
  }

  json(cmd: Command): boolean {
    return cmd.optsWithGlobals<{ json?: boolean }>().json === true;
  }

  print(text: string): void {
    if (text !== '') this.io.stdout(text.endsWith('\n') ? text : `${text}\n`);
  }

  printJson(value: unknown): void {
    this.io.stdout(`${JSON.stringify(value, null, 2)}\n`);
  }

  warn(text: string): void {
    this.io.stderr(`${text}\n`);
  }

  warnings(list: string[] | undefined): void {
    for (const w of list ?? []) this.warn(`warning: ${w}`);
  }

  /** Run `fn` until it ends or the user interrupts (io.signal, or Ctrl-C while it runs). */
  async interruptible<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.io.signal) return fn(this.io.signal);
    const controller = new AbortController();
    const onSigint = () => controller.abort();
    // `once`: a second Ctrl-C falls back to Node's default and kills the process.
    process.once('SIGINT', onSigint);
    try {
      return await fn(controller.signal);
    } finally {
      process.off('SIGINT', onSigint);
    }
  }

  async readJsonFile(file: string): Promise<Record<string, unknown>> {
    let text: string;
    try {
      text = file === '-' ? await (this.io.readStdin ?? readProcessStdin)() : await readFile(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${file === '-' ? 'stdin' : file}: ${err instanceof Error ? err.message : String(err)}`);
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new UsageError(`${file === '-' ? 'stdin' : file} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new UsageError(`${file === '-' ? 'stdin' : file} must hold a JSON object`);
    }
    return value as Record<string, unknown>;
  }
}

function readTokenFile(file: string): { token?: string; why?: string } {
  try {
    const text = readFileSync(file, 'utf8').trim();
    return text === '' ? { why: 'empty' } : { token: text };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { why: code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'not readable by this user' : String(code) };
  }
}

async function readProcessStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Resolves after `ms`, or early (without error) when `signal` aborts. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** commander argument parsers that reject with a usage error. */
export function intArg(name: string, min = 0): (raw: string) => number {
  return (raw) => {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isInteger(n) || n < min) throw new UsageError(`${name}: must be an integer >= ${min}, got "${raw}"`);
    return n;
  };
}
