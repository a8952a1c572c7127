// HAProxy's runtime API (stats socket) and master CLI over a unix socket: one command per
// connection, written then half-closed, so both sockets answer and close. Every call is
// bounded by a timeout; HAProxy's error answers become HaproxyCommandError with its text.
import net from 'node:net';

/** HAProxy answered, and the answer is an error (its own message). */
export class HaproxyCommandError extends Error {
  constructor(
    readonly command: string,
    readonly answer: string,
  ) {
    super(`haproxy: ${answer || 'unexpected empty answer'} (command: ${command})`);
  }
}

/** HAProxy could not be reached (not running, restarting, or too slow). */
export class HaproxyUnreachableError extends Error {}

/** The raw answer to one command. */
export function haproxyCommand(socketPath: string, command: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let done = false;
    const socket = net.createConnection(socketPath);
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(
      () => finish(new HaproxyUnreachableError(`haproxy at ${socketPath} did not answer "${command}" within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('connect', () => socket.end(`${command}\n`));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => finish());
    socket.on('close', () => finish());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // EPIPE/ECONNRESET after an answer arrived: the answer stands.
      if (chunks.length > 0 && (err.code === 'EPIPE' || err.code === 'ECONNRESET')) return finish();
      finish(new HaproxyUnreachableError(`cannot reach haproxy at ${socketPath}: ${err.message}`));
    });
  });
}

/**
 * Run a command whose success answer is known: empty, or matching one of `ok`. Anything else
 * is HAProxy's error message.
 */
export async function haproxyExpect(socketPath: string, command: string, ok: RegExp[] = [], timeoutMs = 5_000): Promise<string> {
  const answer = (await haproxyCommand(socketPath, command, timeoutMs)).trim();
  if (answer === '' || ok.some((re) => re.test(answer))) return answer;
  throw new HaproxyCommandError(command, answer);
}

export interface StatRow {
  backend: string;
  server: string;
  /** current sessions */
  scur: number;
  /** queued requests */
  qcur: number;
  /** total sessions */
  stot: number;
  status: string;
  /** the last health check's status (L4OK, L4CON, L7STS…), when checks run */
  checkStatus?: string;
}

/** Parse `show stat` CSV: server rows only (no FRONTEND/BACKEND lines). */
export function parseShowStat(csv: string): StatRow[] {
  const lines = csv.split('\n');
  const header = lines.find((l) => l.startsWith('# '));
  if (!header) throw new Error(`unexpected "show stat" answer: ${csv.slice(0, 200)}`);
  const cols = header.slice(2).split(',');
  const at = (name: string) => cols.indexOf(name);
  const [px, sv, scur, qcur, stot, status, check] = [
    at('pxname'),
    at('svname'),
    at('scur'),
    at('qcur'),
    at('stot'),
    at('status'),
    at('check_status'),
  ];
  const rows: StatRow[] = [];
  for (const line of lines) {
    if (line === '' || line.startsWith('#')) continue;
    const f = line.split(',');
    const server = f[sv] ?? '';
    if (server === 'FRONTEND' || server === 'BACKEND') continue;
    rows.push({
      backend: f[px] ?? '',
      server,
      scur: Number(f[scur] ?? 0) || 0,
      qcur: Number(f[qcur] ?? 0) || 0,
      stot: Number(f[stot] ?? 0) || 0,
      status: f[status] ?? '',
      ...(check >= 0 && f[check] ? { checkStatus: f[check] } : {}),
    });
  }
  return rows;
}

export interface ServerStateRow {
  backend: string;
  server: string;
  host: string;
  port: number;
  /** srv_uweight: the weight set by the configuration or `set server … weight` */
  weight: number;
  /** srv_admin_state bits: 0x01/0x02/0x04/0x20/0x40 maintenance, 0x08/0x10 drain */
  adminState: number;
  maint: boolean;
  drain: boolean;
}

/** Parse `show servers state [backend]`. */
export function parseServersState(text: string): ServerStateRow[] {
  const lines = text.split('\n');
  const header = lines.find((l) => l.startsWith('# be_id'));
  if (!header) {
    if (text.trim() === '' || /^\d+$/.test(text.trim())) return [];
    throw new Error(`unexpected "show servers state" answer: ${text.slice(0, 200)}`);
  }
  const cols = header.slice(2).split(' ');
  const at = (name: string) => cols.indexOf(name);
  const [be, name, addr, admin, port] = [at('be_name'), at('srv_name'), at('srv_addr'), at('srv_admin_state'), at('srv_port')];
  const uweight = at('srv_uweight');
  const rows: ServerStateRow[] = [];
  for (const line of lines) {
    if (line === '' || line.startsWith('#') || /^\d+$/.test(line.trim())) continue;
    const f = line.split(' ');
    const adminState = Number(f[admin] ?? 0);
    rows.push({
      backend: f[be] ?? '',
      server: f[name] ?? '',
      host: f[addr] ?? '',
      port: Number(f[port] ?? 0),
      weight: Number(f[uweight] ?? 0),
      adminState,
      maint: (adminState & 0x67) !== 0,
      drain: (adminState & 0x18) !== 0,
    });
  }
  return rows;
}

/** `show proc` on the master CLI: the current worker pids and the old (reloaded) ones. */
export function parseShowProc(text: string): { master?: number; failedReloads: number; workers: number[]; oldWorkers: number[] } {
  const out = { master: undefined as number | undefined, failedReloads: 0, workers: [] as number[], oldWorkers: [] as number[] };
  let section: 'workers' | 'old' | 'other' = 'other';
  for (const line of text.split('\n')) {
    if (line.startsWith('# workers')) section = 'workers';
    else if (line.startsWith('# old workers')) section = 'old';
    else if (line.startsWith('#')) section = 'other';
    else {
      const m = /^(\d+)\s+(\w+)/.exec(line);
      if (!m) continue;
      const pid = Number(m[1]);
      if (m[2] === 'master') {
        out.master = pid;
        const failed = /\[failed: (\d+)\]/.exec(line);
        if (failed) out.failedReloads = Number(failed[1]);
      } else if (m[2] === 'worker') {
        if (section === 'workers') out.workers.push(pid);
        else if (section === 'old') out.oldWorkers.push(pid);
      }
    }
  }
  return out;
}
