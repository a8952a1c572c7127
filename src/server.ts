// Composition root: builds Fledge from its config and runs it in the foreground.
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { createApp } from './api/app.ts';
import { ensureAdminToken } from './auth/admin-token.ts';
import { Authenticator } from './auth/authenticator.ts';
import { isLoopbackHost, isWildcardHost, TrustList } from './net/addresses.ts';
import { FledgeService } from './api/service.ts';
import { createBalancer } from './balancers/index.ts';
import type { Balancer } from './balancers/types.ts';
import { checkFactories, loadServerChecks } from './checks/index.ts';
import { fakeCheckFactories } from './checks/fake/index.ts';
import { loadConfig, type ConfigInput, type FledgeConfig } from './config/index.ts';
import { systemClock, type Clock } from './core/clock.ts';
import type { EngineSettings } from './core/deploy/types.ts';
import { EventBus } from './core/events.ts';
import { createHealthWatcher, type HealthReport } from './health/index.ts';
import { createLogger, type Logger } from './logger.ts';
import { CheckRunner } from './reconciler/checks.ts';
import { guardRuntime, Leadership } from './reconciler/leadership.ts';
import { ReconcileLoop } from './reconciler/loop.ts';
import { Relay } from './reconciler/relay.ts';
import { createHosts, type HostRegistry } from './hosts/index.ts';
import { machineIdentity } from './runtimes/process/process-runtime.ts';
import { ephemeralOverlap } from './runtimes/process/ports.ts';
import type { Runtime } from './runtimes/types.ts';
import { FledgeMetrics, timedStore } from './metrics/index.ts';
import { createStore } from './store/index.ts';
import { urlHasPassword } from './store/spec.ts';
import { fencedStore, type Lease, type SchedulerInfo, type Store } from './store/types.ts';
import { FLEDGE_VERSION } from './version.ts';
import { TaskRetention } from './reconciler/retention.ts';
import { WebhookDeliverer } from './webhooks/deliverer.ts';
import { webhookAllowList } from './webhooks/allow.ts';

export interface FledgeServer {
  config: FledgeConfig;
  url: string;
  lbUrl?: string;
  store: Store;
  /** every host's tasks (the leader's term drives it, guarded by its lease) */
  runtime: Runtime;
  hosts: HostRegistry;
  events: EventBus;
  leadership: Leadership<LeaderTerm>;
  /** the leader's balancer (undefined on a follower) */
  readonly balancer: Balancer | undefined;
  /** the leader's loop (throws on a follower) */
  readonly loop: ReconcileLoop;
  /** the admin token of <dataDir>/admin.token (absent with --no-auth), for in-process tests */
  adminToken?: string;
  adminTokenFile?: string;
  close(): Promise<void>;
}

/** What only the leader runs: built when the lease is won, closed when it is lost. */
export interface LeaderTerm {
  loop: ReconcileLoop;
  balancer?: Balancer;
  runtime: Runtime;
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
  const logger = options.logger ?? createLogger(config.logLevel, config.logFormat);
  const clock = options.clock ?? systemClock;
  prepareDataDir(config.dataDir, logger);
  const releaseLock = acquireLock(config.dataDir);
  const schedulerId = `${hostname().slice(0, 24)}-${process.pid}-${randomBytes(3).toString('hex')}`;
  // What was opened so far, closed in reverse if start-up fails half-way (a taken port...).
  const opened: (() => Promise<void>)[] = [];
  try {
    const late: { relay?: Relay; leadership?: Leadership<LeaderTerm>; metrics?: FledgeMetrics } = {};
    const freshFile = config.store.kind === 'sqlite' && !existsSync(config.store.file) ? config.store.file : undefined;
    const store = timedStore(
      await createStore(
        config.store.kind === 'postgres'
          ? { kind: 'postgres', url: config.store.url, schedulerId, logger }
          : config.store.kind === 'memory'
            ? { kind: 'memory' }
            : { kind: 'sqlite', file: config.store.file },
        () => clock.now(),
      ),
      (operation, millis) => late.metrics?.observeStore(operation, millis),
    );
    opened.push(() => store.close());
    if (freshFile) warnNewState(logger, freshFile);
    const trust = new TrustList(config.trustForwardedFrom);
    const authenticator = config.api.auth ? new Authenticator(store, clock) : undefined;
    const admin = authenticator ? await ensureAdminToken(config.dataDir, store, clock.now()) : undefined;
    const machine = machineIdentity();
    // Other schedulers' data dirs on this machine: a takeover finds their unrecorded tasks there.
    const peerDataDirs = async () =>
      (await store.cluster.listSchedulers()).filter((s) => s.machine === machine && s.dataDir !== config.dataDir).map((s) => s.dataDir);
    // Containers are labelled with this id, so a restarted Fledge adopts its own and no other's.
    const installationId = await store.ensureMeta('installation-id', randomUUID().replaceAll('-', ''));
    // One registry and runtime per server: the API reads hosts and logs through them; the
    // leader's term drives them (guarded by its lease).
    const { registry: hosts, runtime } = createHosts(config, {
      store,
      clock,
      logger,
      installationId,
      peerDataDirs,
      leading: () => late.leadership?.leading ?? false,
    });
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
    const events = new EventBus();
    const metrics = new FledgeMetrics({
      store,
      balancer: () => late.leadership?.term?.balancer,
      balancerKind: config.lb,
      leading: () => late.leadership?.leading ?? false,
      logger,
    });
    late.metrics = metrics;
    const unwatch = metrics.watch(events);
    opened.push(async () => unwatch());
    const serverChecks = await loadServerChecks(config.checkModules);
    const locks = { run: <T>(key: string, fn: () => Promise<T>) => store.locked(key, fn) };
    // The leadership and the relay (in `late`) are built once the URL is known; calls before that wake nobody.
    const service = new FledgeService({
      store,
      locks,
      clock,
      events,
      wake: (id) => late.relay?.wake(id),
      allowCanaryLbChange: config.allowCanaryLbChange,
      prometheus: config.prometheus,
      serverChecks: () => serverChecks.map((c) => c.name),
      maxQueuedRuns: config.jobs.maxQueuedRuns,
      newRunId: () => randomUUID(),
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
      cluster: async () => (late.leadership ? late.leadership.view() : { leader: null, schedulers: [] }),
      balancer: () => late.leadership?.term?.balancer,
      balancerKind: config.lb,
      metrics,
      webhookAllow: webhookAllowList(config.webhooks.allow),
      security: {
        authenticator,
        bindHost: config.host,
        ...(config.api.publicUrl !== undefined ? { publicUrl: config.api.publicUrl } : {}),
        // where other servers and users reach this one (--advertise-url) is one of its names too
        allowedHosts: [...config.api.allowedHosts, ...(config.advertiseUrl !== undefined ? [new URL(config.advertiseUrl).hostname] : [])],
        allowedOrigins: config.api.allowedOrigins,
        trustForwardedFrom: trust,
        maxBodyBytes: config.api.maxBodyBytes,
        maxInstances: config.api.maxInstances,
      },
    });
    // Listen before re-adopting tasks, so a taken port fails start-up before anything is touched.
    const server = await listen(app.fetch, config.host, config.port, options.apiServer);
    opened.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = config.advertiseUrl ?? `http://${urlHost(config.host)}:${port}`;
    const self: SchedulerInfo = {
      id: schedulerId,
      url,
      hostname: hostname(),
      machine,
      pid: process.pid,
      dataDir: config.dataDir,
      version: FLEDGE_VERSION,
    };

    const startTerm = async (lease: Lease, guard: () => boolean): Promise<LeaderTerm> => {
      const parts: (() => Promise<void>)[] = [];
      try {
        const termStore = fencedStore(store, lease, () => late.leadership?.fenced(), guard);
        const balancer = await startBalancer(config, logger, guard);
        if (balancer) parts.push(() => balancer.close());
        const factories = config.checks === 'fake' ? fakeCheckFactories : checkFactories({ prometheus: config.prometheus });
        const checks = new CheckRunner({ store: termStore, clock, logger, factories, serverChecks, ...(balancer ? { balancer } : {}) });
        const settings: EngineSettings = {
          killGraceMillis: config.killGraceSeconds * 1000,
          backoffBaseMillis: 1000,
          backoffMaxMillis: 60_000,
          capacityRetryMillis: 1000,
          decisionLogLimit: 500,
          launchBatchSize: 100,
          serverChecks: checks.serverCheckNames,
          serverCheckIntervalSeconds: checks.serverCheckIntervalSeconds,
          scheduleTimeZone: config.jobs.scheduleTimeZone,
          defaultAgentPlacement: config.defaultAgentPlacement,
          ...options.settings,
        };
        // The monitor reports to the loop, which is built with the monitor: the callback binds late.
        const recordHealth: HealthReport = (taskId, result, assessment) => {
          metrics.observeHealth(result);
          void loop.executor
            .onHealthResult(taskId, result, assessment)
            .catch((err: unknown) => logger.warn({ err, taskId }, 'could not record a health result'));
        };
        const health = createHealthWatcher(
          config.health === 'fake'
            ? { kind: 'fake', onResult: recordHealth }
            : {
                kind: 'http',
                now: () => clock.now(),
                onResult: recordHealth,
                onError: (err: unknown) => logger.warn({ err }, 'health result handler failed'),
              },
        );
        const loop = new ReconcileLoop({
          store: termStore,
          runtime: guardRuntime(runtime, guard),
          hosts,
          ...(balancer ? { balancer } : {}),
          health,
          checks,
          clock,
          logger,
          settings,
          events,
          locks,
          observePass: (millis) => metrics.observePass(millis),
          observeTick: (millis) => metrics.observeTick(millis),
        });
        parts.push(() => loop.close());
        await loop.start();
        // Webhook deliveries and task-history retention are the leader's background work too.
        const webhooks = new WebhookDeliverer({
          store,
          clock,
          logger,
          timeoutMillis: config.webhooks.timeoutSeconds * 1000,
          retryMaxMillis: config.webhooks.retryMaxSeconds * 1000,
          maxAgeMillis: config.webhooks.maxAgeSeconds * 1000,
          isLeader: guard,
        });
        // Every published change may have queued deliveries (written in its transaction).
        const unsubscribe = events.subscribe(() => webhooks.wake());
        webhooks.start();
        parts.push(async () => {
          unsubscribe();
          await webhooks.close();
        });
        const retention = new TaskRetention({
          store,
          runtime: guardRuntime(runtime, guard),
          clock,
          logger,
          maxAgeMillis: config.jobs.taskHistoryMaxAgeHours * 3_600_000,
          keepPerRequest: config.jobs.taskHistoryPerRequest,
          mayAct: guard,
        });
        retention.start();
        parts.push(() => retention.close());
        return {
          loop,
          ...(balancer ? { balancer } : {}),
          runtime,
          close: async () => {
            for (const close of parts.reverse()) await close().catch((err: unknown) => logger.warn({ err }, 'closing the term'));
          },
        };
      } catch (err) {
        for (const close of parts.reverse()) await close().catch(() => undefined);
        throw err;
      }
    };

    const lead = new Leadership<LeaderTerm>({
      cluster: store.cluster,
      self,
      termMs: config.lease.termMs,
      renewMs: config.lease.renewMs,
      logger,
      startTerm,
    });
    late.leadership = lead;
    const theRelay = new Relay({
      store,
      events,
      selfId: schedulerId,
      logger,
      leading: () => lead.leading,
      wakeLocal: (id) => lead.term?.loop.wake(id),
    });
    late.relay = theRelay;
    await theRelay.start();
    opened.push(() => theRelay.close());
    opened.push(() => lead.close());
    await lead.start();
    const lbAddress = (b: Balancer | undefined) => (b && 'address' in b ? (b as { address(): { port: number } }).address() : undefined);
    const lbPort = lbAddress(lead.term?.balancer)?.port ?? (config.lb === 'none' ? undefined : config.lbPort);
    logger.info(
      {
        url,
        lb: config.lb,
        lbHost: config.lbHost,
        lbPort,
        dataDir: config.dataDir,
        store: store.description,
        schedulerId,
        leader: lead.leading,
      },
      'fledge is serving',
    );
    logStartNotes(logger, config, port, admin?.file, admin?.created ?? false);
    return {
      config,
      url,
      ...(admin ? { adminToken: admin.token, adminTokenFile: admin.file } : {}),
      ...(lbPort !== undefined ? { lbUrl: `http://${urlHost(config.lbHost)}:${lbPort}` } : {}),
      store,
      runtime,
      hosts,
      events,
      leadership: lead,
      get balancer() {
        return lead.term?.balancer;
      },
      get loop() {
        const loop = lead.term?.loop;
        if (!loop) throw new Error('this server does not lead: it runs no loop');
        return loop;
      },
      async close() {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          // SSE streams keep connections open; do not wait for them.
          (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        });
        unwatch();
        await lead.close();
        await theRelay.close();
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

/** The leader's balancer; `guard` keeps one that lost the lease from touching HAProxy. */
async function startBalancer(config: FledgeConfig, logger: Logger, guard: () => boolean): Promise<Balancer | undefined> {
  if (config.lb === 'builtin') {
    return createBalancer({
      kind: 'builtin',
      host: config.lbHost,
      port: config.lbPort,
      ...config.lbLimits,
      trustForwardedFrom: config.trustForwardedFrom,
      drainTimeoutMs: config.drainTimeoutSeconds * 1000,
      upstreamTimeoutMs: config.lbUpstreamTimeoutSeconds * 1000,
      ejectAfterFailures: config.lbEjectAfterFailures,
      logger,
    });
  }
  if (config.lb === 'fake') return createBalancer({ kind: 'fake', logger });
  if (config.lb !== 'haproxy') return undefined;
  return createBalancer({
    kind: 'haproxy',
    mode: config.haproxy.mode,
    dataDir: config.dataDir,
    bin: config.haproxy.bin,
    host: config.lbHost,
    port: config.lbPort,
    ...config.lbLimits,
    trustForwardedFrom: config.trustForwardedFrom,
    ...(config.haproxy.runtimeSocket !== undefined ? { runtimeSocket: config.haproxy.runtimeSocket } : {}),
    ...(config.haproxy.configPath !== undefined ? { configPath: config.haproxy.configPath } : {}),
    ...(config.haproxy.masterSocket !== undefined ? { masterSocket: config.haproxy.masterSocket } : {}),
    reconcileIntervalMs: config.haproxy.reconcileSeconds * 1000,
    drainTimeoutMs: config.drainTimeoutSeconds * 1000,
    upstreamTimeoutMs: config.lbUpstreamTimeoutSeconds * 1000,
    ejectAfterFailures: config.lbEjectAfterFailures,
    mayAct: guard,
    logger,
  });
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

/**
 * A new database is created when none is where this start looks: said loudly, with where, and
 * with any other Fledge state found near by — a `serve` started from another directory (the
 * default data dir is ./.fledge) would otherwise quietly come up with no requests.
 */
function warnNewState(logger: Logger, file: string): void {
  const near = new Set<string>();
  let dir = dirname(dirname(file));
  for (let i = 0; i < 3; i++) {
    for (const candidate of [join(dir, '.fledge', 'fledge.db'), join(dir, 'fledge.db')]) {
      if (candidate !== file && existsSync(candidate)) near.add(candidate);
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  const home = process.env.HOME ? join(process.env.HOME, '.fledge', 'fledge.db') : undefined;
  if (home && home !== file && existsSync(home)) near.add(home);
  logger.warn(
    { file, cwd: process.cwd(), ...(near.size > 0 ? { otherState: [...near] } : {}) },
    near.size > 0
      ? `NEW, EMPTY STATE created at ${file}; other Fledge state exists at ${[...near].join(', ')}: to use it, stop and start with --data-dir (FLEDGE_DATA_DIR) pointing at its directory`
      : `NEW, EMPTY STATE created at ${file} (no requests yet); later starts must use this same --data-dir (FLEDGE_DATA_DIR)`,
  );
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
  const logger = createLogger(config.logLevel, config.logFormat);
  if (typeof flags.store === 'string' && urlHasPassword(flags.store)) {
    logger.warn(
      {},
      'the --store URL carries a password, which other users of this machine can read in the process list; give it in FLEDGE_STORE, PGPASSWORD or ~/.pgpass instead',
    );
  }
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
  // A stray rejection (a connection lost at an odd moment) must not take the scheduler down:
  // everything is in the store and every action is idempotent, so log it and carry on.
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection (Fledge keeps running)'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
