// Composition root: builds Fledge from its config and runs it in the foreground.
import { randomUUID } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { createApp } from './api/app.ts';
import { ensureAdminToken } from './auth/admin-token.ts';
import { Authenticator } from './auth/authenticator.ts';
import { isLoopbackHost, isWildcardHost, TrustList } from './net/addresses.ts';
import { FledgeService } from './api/service.ts';
import { createBalancer } from './balancers/index.ts';
import type { Balancer } from './balancers/types.ts';
import { checkFactories, loadServerChecks } from './checks/index.ts';
import { loadConfig, type ConfigInput, type FledgeConfig } from './config/index.ts';
import { systemClock, type Clock } from './core/clock.ts';
import type { EngineSettings } from './core/deploy/types.ts';
import { EventBus } from './core/events.ts';
import { HealthMonitor } from './health/health-monitor.ts';
import { createHosts, type HostRegistry } from './hosts/index.ts';
import { createLogger, type Logger } from './logger.ts';
import { CheckRunner } from './reconciler/checks.ts';
import { ReconcileLoop } from './reconciler/loop.ts';
import { ephemeralOverlap } from './runtimes/process/ports.ts';
import type { Runtime } from './runtimes/types.ts';
import { createStore } from './store/index.ts';
import type { Store } from './store/types.ts';

export interface FledgeServer {
  config: FledgeConfig;
  url: string;
  lbUrl?: string;
  store: Store;
  runtime: Runtime;
  hosts: HostRegistry;
  balancer?: Balancer;
  loop: ReconcileLoop;
  /** the admin token of <dataDir>/admin.token (absent with --no-auth), for in-process tests */
  adminToken?: string;
  adminTokenFile?: string;
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  clock?: Clock;
  /** overrides for tests (e.g. faster crash-loop backoff) */
  settings?: Partial<EngineSettings>;
  /** overrides of the API server's connection limits, for tests */
  apiServer?: Partial<ApiServerLimits>;
}

export async function startServer(config: FledgeConfig, options: StartOptions = {}): Promise<FledgeServer> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const clock = options.clock ?? systemClock;
  prepareDataDir(config.dataDir, logger);
  const releaseLock = acquireLock(config.dataDir);
  // What was opened so far, closed in reverse if start-up fails half-way (a taken port...).
  const opened: (() => Promise<void>)[] = [];
  try {
    const store = await createStore({ kind: 'sqlite', dataDir: config.dataDir }, () => clock.now());
    opened.push(() => store.close());
    const trust = new TrustList(config.trustForwardedFrom);
    const authenticator = config.api.auth ? new Authenticator(store, clock) : undefined;
    const admin = authenticator ? await ensureAdminToken(config.dataDir, store, clock.now()) : undefined;
    const lbLimits = { ...config.lbLimits, trustForwardedFrom: config.trustForwardedFrom };
    // Containers are labelled with this id, so a restarted Fledge adopts its own and no other's.
    const installationId = await store.ensureMeta('installation-id', randomUUID().replaceAll('-', ''));
    const { registry: hosts, runtime } = createHosts(config, { store, clock, logger, installationId });
    opened.push(() => runtime.close());
    await hosts.start();
    opened.push(() => hosts.close());
    const overlap = ephemeralOverlap(config.portRange);
    if (overlap) {
      logger.warn(
        { portRange: config.portRange, ephemeral: overlap.ephemeral },
        `task ports ${overlap.from}-${overlap.to} are inside the kernel's ephemeral port range (/proc/sys/net/ipv4/ip_local_port_range): any outgoing connection may take one; choose --port-range-from/--port-range-to outside ${overlap.ephemeral.from}-${overlap.ephemeral.to}`,
      );
    }
    const balancer =
      config.lb === 'builtin'
        ? await createBalancer({
            kind: 'builtin',
            host: config.lbHost,
            port: config.lbPort,
            ...lbLimits,
            drainTimeoutMs: config.drainTimeoutSeconds * 1000,
            logger,
          })
        : config.lb === 'haproxy'
          ? await createBalancer({
              kind: 'haproxy',
              mode: config.haproxy.mode,
              dataDir: config.dataDir,
              bin: config.haproxy.bin,
              host: config.lbHost,
              port: config.lbPort,
              ...lbLimits,
              ...(config.haproxy.runtimeSocket !== undefined ? { runtimeSocket: config.haproxy.runtimeSocket } : {}),
              ...(config.haproxy.configPath !== undefined ? { configPath: config.haproxy.configPath } : {}),
              ...(config.haproxy.masterSocket !== undefined ? { masterSocket: config.haproxy.masterSocket } : {}),
              reconcileIntervalMs: config.haproxy.reconcileSeconds * 1000,
              drainTimeoutMs: config.drainTimeoutSeconds * 1000,
              logger,
            })
          : undefined;
    if (balancer) opened.push(() => balancer.close());
    const events = new EventBus();
    const serverChecks = await loadServerChecks(config.checkModules);
    const checks = new CheckRunner({ store, clock, logger, factories: checkFactories, serverChecks });
    const settings: EngineSettings = {
      killGraceMillis: config.killGraceSeconds * 1000,
      backoffBaseMillis: 1000,
      backoffMaxMillis: 60_000,
      capacityRetryMillis: 1000,
      decisionLogLimit: 500,
      launchBatchSize: 100,
      serverChecks: checks.serverCheckNames,
      serverCheckIntervalSeconds: checks.serverCheckIntervalSeconds,
      ...options.settings,
    };
    // The monitor reports to the loop, which is built with the monitor: the callback binds late.
    const health = new HealthMonitor({
      now: () => clock.now(),
      onResult: (taskId, result, assessment) => void loop.executor.onHealthResult(taskId, result, assessment),
      onError: (err: unknown) => logger.warn({ err }, 'health result handler failed'),
    });
    const loop = new ReconcileLoop({ store, runtime, ...(balancer ? { balancer } : {}), health, checks, clock, logger, settings, events });
    const service = new FledgeService({
      store,
      locks: loop.locks,
      clock,
      events,
      wake: (id) => loop.wake(id),
      allowCanaryLbChange: config.allowCanaryLbChange,
      serverChecks: () => checks.serverCheckNames,
    });
    const app = createApp({
      store,
      service,
      runtime,
      hosts,
      events,
      clock,
      containers: runtime.capabilities().containers,
      logger,
      security: {
        authenticator,
        bindHost: config.host,
        ...(config.api.publicUrl !== undefined ? { publicUrl: config.api.publicUrl } : {}),
        allowedHosts: config.api.allowedHosts,
        allowedOrigins: config.api.allowedOrigins,
        trustForwardedFrom: trust,
        maxBodyBytes: config.api.maxBodyBytes,
        maxInstances: config.api.maxInstances,
      },
    });
    // Listen before re-adopting tasks, so a taken port fails start-up before anything is touched.
    const server = await listen(app.fetch, config.host, config.port, options.apiServer);
    opened.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    opened.push(() => loop.close());
    await loop.start();
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = `http://${urlHost(config.host)}:${port}`;
    const lbAddress = balancer && 'address' in balancer ? (balancer as { address(): { port: number } }).address() : undefined;
    logger.info({ url, lb: config.lb, lbHost: config.lbHost, lbPort: lbAddress?.port, dataDir: config.dataDir }, 'fledge is serving');
    logStartNotes(logger, config, port, admin?.file, admin?.created ?? false);
    return {
      config,
      url,
      ...(admin ? { adminToken: admin.token, adminTokenFile: admin.file } : {}),
      ...(lbAddress ? { lbUrl: `http://${urlHost(config.lbHost)}:${lbAddress.port}` } : {}),
      store,
      runtime,
      hosts,
      ...(balancer ? { balancer } : {}),
      loop,
      async close() {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          // SSE streams keep connections open; do not wait for them.
          (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        });
        await loop.close();
        await balancer?.close();
        await hosts.close();
        await runtime.close();
        await store.close();
        releaseLock();
        logger.info({}, 'fledge stopped; tasks keep running');
      },
    };
  } catch (err) {
    for (const close of opened.reverse()) await close().catch(() => undefined);
    releaseLock();
    throw err;
  }
}

/** The API's own connection limits: slow or idle clients cannot hold it (event streams are responses, so unaffected). */
export interface ApiServerLimits {
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  maxHeaderSize: number;
  maxConnections: number;
}

const API_SERVER_LIMITS: ApiServerLimits = {
  headersTimeout: 10_000,
  requestTimeout: 60_000,
  keepAliveTimeout: 5_000,
  maxHeaderSize: 16 * 1024,
  maxConnections: 1024,
};

function listen(
  fetch: Parameters<typeof serve>[0]['fetch'],
  hostname: string,
  port: number,
  overrides: Partial<ApiServerLimits> = {},
): Promise<ServerType> {
  const { maxConnections, ...limits } = { ...API_SERVER_LIMITS, ...overrides };
  // Node checks the timeouts this often (30 s by default).
  const serverOptions = { ...limits, connectionsCheckingInterval: Math.max(100, Math.min(1_000, limits.headersTimeout / 4)) };
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, hostname, port, serverOptions }, () => resolve(server));
    (server as unknown as { maxConnections: number }).maxConnections = maxConnections;
    server.once('error', reject);
  });
}

/** The data dir holds the database, the admin token and task sandboxes: its owner's only. */
function prepareDataDir(dataDir: string, logger: Logger): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const mode = statSync(dataDir).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    chmodSync(dataDir, 0o700);
    logger.warn({ dataDir, was: mode.toString(8) }, 'the data dir was readable by other users; it is now 0700');
  }
}

function urlHost(host: string): string {
  const h = isWildcardHost(host) ? '127.0.0.1' : host;
  return h.includes(':') && !h.startsWith('[') ? `[${h}]` : h;
}

/** What a user (or an operator reading the log) must know at every start; never a token. */
function logStartNotes(logger: Logger, config: FledgeConfig, port: number, tokenFile: string | undefined, created: boolean): void {
  if (!config.api.auth) {
    logger.warn(
      { host: config.host },
      'authentication is OFF (--no-auth): anyone who can reach the API on this machine can run commands as this user',
    );
  } else if (tokenFile) {
    logger.info(
      { tokenFile, created },
      created ? 'wrote a new admin token; the CLI reads it from there, the web UI asks for it' : 'admin token in the data dir',
    );
  }
  if (!isLoopbackHost(config.host)) {
    const addresses = isWildcardHost(config.host)
      ? Object.values(networkInterfaces())
          .flatMap((list) => list ?? [])
          .map((a) => `http://${urlHost(a.address)}:${port}`)
      : [`http://${urlHost(config.host)}:${port}`];
    logger.warn({ addresses, publicUrl: config.api.publicUrl }, 'the API listens on a non-loopback address: other machines can reach it');
  }
  logger.info({ ui: config.api.publicUrl ?? `http://${urlHost(config.host)}:${port}/` }, 'web UI');
}

/** One scheduler per data dir: two would both manage the same tasks. */
function acquireLock(dataDir: string): () => void {
  const file = join(dataDir, 'fledge.pid');
  try {
    const pid = Number(readFileSync(file, 'utf8'));
    if (pid && pid !== process.pid && isAlive(pid)) {
      throw new Error(`Another Fledge (pid ${pid}) is using ${dataDir}; stop it or choose another --data-dir`);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  writeFileSync(file, String(process.pid), { mode: 0o600 });
  return () => rmSync(file, { force: true });
}

/** Alive and a Fledge: after a SIGKILL the pid in the file may belong to anything. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('fledge');
  } catch {
    return false;
  }
}

/** `fledge serve`: runs until SIGTERM/SIGINT, then stops cleanly; tasks keep running. */
export async function runServe(flags: ConfigInput): Promise<void> {
  const config = loadConfig(flags);
  const logger = createLogger(config.logLevel);
  const server = await startServer(config, { logger });
  // On a terminal only (never into a log file): a link that signs the web UI in.
  if (process.stderr.isTTY && server.adminToken) {
    const base = config.api.publicUrl ?? server.url;
    process.stderr.write(
      `\nFledge web UI: ${base.replace(/\/$/, '')}/?token=${server.adminToken}\n(the CLI finds the token in ${server.adminTokenFile})\n\n`,
    );
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'unclean stop');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
