// An HAProxy the test runs itself, for `--lb haproxy` in attached mode (several schedulers
// sharing one PostgreSQL store all attach to it): master-worker (`-W`) with its master CLI, a
// stats socket at admin level, and the configuration Fledge's attached balancer writes and
// reloads (spare backends, empty route maps). Its process group is registered with
// fledge-process.ts, so cleanup() kills it.
import { DEFAULT_CLIENT_LIMITS } from '../../src/balancers/limits.ts';
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { renderConfig, renderMap, slotName } from '../../src/balancers/haproxy/config.ts';
import { haproxyCommand } from '../../src/balancers/haproxy/runtime-api.ts';
import { trackProcessGroup } from './fledge-process.ts';
import { waitFor } from './wait-for.ts';

export interface AttachedHaproxy {
  pid: number;
  port: number;
  url: string;
  configPath: string;
  statsSocket: string;
  masterSocket: string;
  /** the serve flags that attach a scheduler to it */
  args: string[];
  command(cmd: string): Promise<string>;
  /** every server HAProxy has (`show servers state`); `ready`: running and in rotation (no maint, no drain) */
  servers(): Promise<{ backend: string; server: string; ready: boolean }[]>;
  log(): string;
}

export async function startAttachedHaproxy(port: number, spares = 8): Promise<AttachedHaproxy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fledge-hapx-'));
  const configPath = path.join(dir, 'haproxy.cfg');
  const statsSocket = path.join(dir, 'stats.sock');
  const masterSocket = path.join(dir, 'master.sock');
  const exactMap = path.join(dir, 'fledge-routes-exact.map');
  const prefixMap = path.join(dir, 'fledge-routes-prefix.map');
  const routingMap = path.join(dir, 'fledge-routing.map');
  const routingServersMap = path.join(dir, 'fledge-routing-servers.map');
  for (const map of [exactMap, prefixMap, routingMap, routingServersMap]) writeFileSync(map, renderMap([]));
  writeFileSync(
    configPath,
    renderConfig({
      masterWorker: false,
      bindHost: '127.0.0.1',
      bindPort: port,
      statsSocket,
      exactMap,
      prefixMap,
      routingMap,
      routingServersMap,
      hardStopAfterMs: 40_000,
      connectTimeoutMs: 5_000,
      // no servers yet: Fledge writes them (with their checks) once it attaches
      serverParams: '',
      serverTimeoutMs: 60_000,
      limits: DEFAULT_CLIENT_LIMITS,
      trustForwardedFrom: [],
      backends: Array.from({ length: spares }, (_, i) => ({ name: slotName(i), servers: [] })),
    }),
  );
  const logFile = path.join(dir, 'haproxy.log');
  const out = openSync(logFile, 'a');
  const child = spawn('haproxy', ['-W', '-db', '-f', configPath, '-S', `${masterSocket},mode,600`], {
    detached: true,
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  if (child.pid === undefined) throw new Error('could not start haproxy');
  const pid = child.pid;
  child.unref();
  trackProcessGroup(pid, 'attached haproxy');
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`haproxy exited: ${readFileSync(logFile, 'utf8')}`);
      return (await haproxyCommand(statsSocket, 'show info', 1_000).catch(() => '')).includes('Name: HAProxy');
    },
    { timeoutMs: 10_000, intervalMs: 50, message: 'haproxy to answer on its stats socket' },
  );
  return {
    pid,
    port,
    url: `http://127.0.0.1:${port}`,
    configPath,
    statsSocket,
    masterSocket,
    args: ['--lb', 'haproxy', '--haproxy-socket', statsSocket, '--haproxy-config', configPath, '--haproxy-master-socket', masterSocket],
    command: (cmd) => haproxyCommand(statsSocket, cmd, 5_000),
    async servers() {
      const answer = await haproxyCommand(statsSocket, 'show servers state', 5_000);
      return (
        answer
          .split('\n')
          .filter((l) => /^\d+ /.test(l))
          .map((l) => l.split(' '))
          // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state …
          .map((f) => ({ backend: f[1] ?? '', server: f[3] ?? '', ready: f[5] === '2' && f[6] === '0' }))
      );
    },
    log: () => readFileSync(logFile, 'utf8'),
  };
}
