// A private PostgreSQL cluster for tests: Debian's server binaries (`.ci/run` installs the
// `postgresql` package; its own cluster is never used), `initdb` into a temp dir as the
// `postgres` user (the server refuses to run as root), listening on 127.0.0.1 on a port from
// the machine-wide test reservations and on a unix socket in that dir only. Password auth over
// TCP, so every URL carries user:password like a user's would. Durability is off (fsync,
// synchronous_commit): tests restart the server with a fast shutdown, never pull the plug.
//
// One cluster per test file; a fresh database per test (`createDatabase`). `stop()` ends the
// postmaster by pid and `destroy()` removes the dir; an exit hook stops a cluster a test
// file forgot.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { reservePorts } from './ports.ts';
import { waitFor } from './wait-for.ts';

export interface TestPostgres {
  host: string;
  port: number;
  /** the postmaster's pid (changes on restart) */
  readonly pid: number;
  /** URL of a database of this cluster, with the password */
  url(database: string): string;
  /** a new empty database; resolves to its URL */
  createDatabase(name?: string): Promise<string>;
  /** run SQL as the superuser on `database` (default `postgres`) */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[], database?: string): Promise<R[]>;
  /** fast shutdown (SIGINT to the postmaster), waiting until it is gone */
  stop(): Promise<void>;
  /** start again on the same data and port */
  start(): Promise<void>;
  /** stop and remove everything */
  destroy(): Promise<void>;
  readonly log: () => string;
}

const USER = 'fledge';

/** The newest installed PostgreSQL server's bin dir (FLEDGE_TEST_PG_BIN overrides). */
export function postgresBinDir(): string {
  if (process.env.FLEDGE_TEST_PG_BIN) return process.env.FLEDGE_TEST_PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) {
    throw new Error(
      'PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql, as .ci/run does; or set FLEDGE_TEST_PG_BIN)',
    );
  }
  return path.join(root, versions[0] as string, 'bin');
}

/** Root cannot run the server: run its tools as `postgres`; anyone else runs them as themselves. */
function asServerUser(bin: string, args: string[]): { cmd: string; args: string[] } {
  return process.getuid?.() === 0 ? { cmd: 'runuser', args: ['-u', 'postgres', '--', bin, ...args] } : { cmd: bin, args };
}

function run(bin: string, args: string[], what: string): void {
  const c = asServerUser(bin, args);
  const r = spawnSync(c.cmd, c.args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${what} failed (${r.status ?? r.signal}): ${r.stderr || r.stdout || r.error?.message}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const running = new Set<number>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    // immediate shutdown: the process is going away and cannot wait
    for (const pid of running) if (alive(pid)) process.kill(pid, 'SIGQUIT');
  });
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir();
  const dir = mkdtempSync(path.join(tmpdir(), 'fledge-pg-'));
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  const password = randomBytes(12).toString('hex');
  const port = reservePorts(1).from;
  const host = '127.0.0.1';
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const pwfile = path.join(dir, 'pw');
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(pwfile, uid, -1);
  }
  run(
    path.join(bin, 'initdb'),
    [
      '-D',
      data,
      '-U',
      USER,
      `--pwfile=${pwfile}`,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ],
    'initdb',
  );
  rmSync(pwfile, { force: true });
  appendFileSync(
    path.join(data, 'postgresql.conf'),
    [
      '',
      '# fledge test cluster',
      `port = ${port}`,
      `listen_addresses = '${host}'`,
      `unix_socket_directories = '${dir}'`,
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      'max_connections = 200',
      'shared_buffers = 32MB',
      "log_min_messages = 'warning'",
      '',
    ].join('\n'),
  );
  let pid = 0;
  const url = (database: string) => `postgres://${USER}:${password}@${host}:${port}/${database}`;

  const start = async () => {
    try {
      run(path.join(bin, 'pg_ctl'), ['-D', data, '-l', logFile, '-w', '-t', '60', 'start'], 'pg_ctl start');
    } catch (err) {
      // pg_ctl only says "examine the log output": the server's own reason is in its log.
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '(no log)';
      throw new Error(`${(err as Error).message}\n${logFile}:\n${log}`, { cause: err });
    }
    pid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    running.add(pid);
    hookExit();
  };
  const stop = async () => {
    if (!pid || !alive(pid)) return;
    process.kill(pid, 'SIGINT');
    await waitFor(() => !alive(pid), { timeoutMs: 30_000, intervalMs: 20, message: `postgres (pid ${pid}) to stop` });
    running.delete(pid);
  };
  const query = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = [], database = 'postgres'): Promise<R[]> => {
    const client = new pg.Client({ connectionString: url(database), connectionTimeoutMillis: 10_000 });
    await client.connect();
    try {
      return (await client.query<R>(text, values)).rows;
    } finally {
      await client.end();
    }
  };
  let seq = 0;

  await start();
  return {
    host,
    port,
    get pid() {
      return pid;
    },
    url,
    async createDatabase(name = `t${process.pid}_${++seq}_${randomBytes(3).toString('hex')}`) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
      await query(`CREATE DATABASE ${name} TEMPLATE template0`);
      return url(name);
    },
    query,
    stop,
    start,
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
  };
}
