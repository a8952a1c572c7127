// What every command shares: the I/O it may use (injected so tests run the CLI in-process),
// the client for --server, and how results and warnings are printed.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { FledgeApiError, FledgeClient, type TaskView } from '../api/client.ts';
import type { OptionInput } from '../config/options.ts';
import { nodeTransport } from './http.ts';
import { makeStyle, plain, type Style } from './style.ts';

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
  /** stdout is a terminal: colour, symbols, a redrawn watch (default: process.stdout.isTTY, unless NO_COLOR) */
  isTTY?: boolean;
  /** terminal width for the redrawn watch (default: process.stdout.columns) */
  columns?: number;
}

/** Bad input on the command line or in a file: exit code 2 like a 4xx. */
export class UsageError extends Error {}

/** Something named on the command line does not exist (exit code 3, like a 404). */
export class NotFoundError extends Error {}

/** `--server`: a URL, `host:port` (http:// is meant) or a bare port on this machine. */
export function serverUrl(raw: string): string {
  const value = raw.trim();
  const withScheme = /^\d+$/.test(value) ? `http://127.0.0.1:${value}` : /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UsageError(`--server: ${JSON.stringify(raw)} is not a URL or host:port (e.g. http://127.0.0.1:7099 or localhost:7099)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--server: ${url.protocol} is not http: or https:`);
  return url.toString().replace(/\/+$/, '');
}

/** Where a JSON.parse error points, as line and column (1-based) of `text`. */
export function jsonErrorPosition(text: string, err: unknown): { line: number; column: number } | undefined {
  const message = err instanceof Error ? err.message : String(err);
  const lc = /line (\d+) column (\d+)/.exec(message);
  if (lc) return { line: Number(lc[1]), column: Number(lc[2]) };
  const pos = /at position (\d+)/.exec(message);
  // Node 20 names only the token for some errors: its first place outside a string is where.
  const token = /^Unexpected token '(.)'/.exec(message)?.[1];
  const at = pos
    ? Number(pos[1])
    : /Unexpected end of JSON input/.test(message)
      ? text.length
      : token !== undefined
        ? firstOutsideString(text, token)
        : undefined;
  if (at === undefined) return undefined;
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  return { line, column: at - (before.lastIndexOf('\n') + 1) + 1 };
}

function firstOutsideString(text: string, ch: string): number | undefined {
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === ch) return i;
    else if (c === '"') inString = true;
  }
  return undefined;
}

export class Ctx {
  exitCode = 0;
  readonly style: Style;

  constructor(readonly io: CliIo) {
    const env = io.env ?? process.env;
    const tty = io.isTTY ?? (io.stdout === undefined ? false : process.stdout.isTTY === true);
    this.style = makeStyle(tty && !env.NO_COLOR && env.TERM !== 'dumb');
  }

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
    return new FledgeClient(serverUrl(server), { transport: nodeTransport, ...(bearer ? { token: bearer } : {}) });
  }

  /**
   * A task named by its full id, a unique prefix of a live task's id, or `request#instance`
   * (the live task of that instance, else its latest ended one).
   */
  async resolveTask(client: FledgeClient, ref: string): Promise<TaskView> {
    return this.#findTask(client, ref);
  }

  /**
   * Runs `fn` with the task's full id: `ref` as given first (the usual case, one call), and
   * only when the server does not know it, with the id it is a prefix or request#instance of.
   */
  async withTask<T>(client: FledgeClient, ref: string, fn: (taskId: string) => Promise<T>): Promise<T> {
    if (!/#\d+$/.test(ref)) {
      try {
        return await fn(ref);
      } catch (err) {
        if (!(err instanceof FledgeApiError) || err.status !== 404) throw err;
      }
    }
    const found = await this.#findTask(client, ref);
    if (found.taskId.id === ref) throw new NotFoundError(`task ${ref} has no such resource`);
    return fn(found.taskId.id);
  }

  async #findTask(client: FledgeClient, ref: string): Promise<TaskView> {
    const hash = /^(.+)#(\d+)$/.exec(ref);
    if (hash) {
      const [, requestId, n] = hash as unknown as [string, string, string];
      const instance = Number(n);
      const live = (await client.requestTasks(requestId)).filter((t) => t.taskId.instanceNo === instance);
      const newest = (list: TaskView[]) => [...list].sort((a, b) => b.taskId.startedAt - a.taskId.startedAt)[0];
      const found = newest(live.filter((t) => !t.cleanup)) ?? newest(live);
      if (found) return found;
      throw new NotFoundError(`request ${requestId} has no live task for instance ${instance}`);
    }
    try {
      return await client.getTask(ref);
    } catch (err) {
      if (!(err instanceof FledgeApiError) || err.status !== 404) throw err;
    }
    const matches = (await client.activeTasks()).filter((t) => t.taskId.id.startsWith(ref));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) {
      throw new UsageError(
        `${ref} matches ${matches.length} tasks; give more of the id:\n${matches
          .slice(0, 10)
          .map((t) => `  ${t.taskId.id}`)
          .join('\n')}`,
      );
    }
    throw new NotFoundError(`no task ${ref}: no task has that id, and no live task's id starts with it (or name it request#instance)`);
  }

  tokenHint(): string {
    return this.#tokenSource;
  }

  json(cmd: Command): boolean {
    return cmd.optsWithGlobals<{ json?: boolean }>().json === true;
  }

  print(text: string): void {
    if (text === '') return;
    const out = this.style.tty ? text : plain(text);
    this.io.stdout(out.endsWith('\n') ? out : `${out}\n`);
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
      const where = jsonErrorPosition(text, err);
      const name = file === '-' ? 'stdin' : file;
      const reason = (err instanceof Error ? err.message : String(err))
        .replace(/ in JSON at position \d+.*$/s, '')
        .replace(/\s*\(line \d+ column \d+\)/, '');
      if (!where) throw new UsageError(`${name} is not valid JSON: ${reason}`);
      const line = text.split('\n')[where.line - 1] ?? '';
      throw new UsageError(
        `${name}:${where.line}:${where.column}: not valid JSON: ${reason}\n  ${line.slice(0, 200)}\n  ${' '.repeat(Math.max(0, Math.min(200, where.column - 1)))}^`,
      );
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
