// Composition root: builds Fledge from its config and runs it in the foreground.
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { createApp } from './api/app.ts';
import { FledgeService } from './api/service.ts';
import { createBalancer } from './balancers/index.ts';
import type { Balancer } from './balancers/types.ts';
import { checkFactories, loadServerChecks } from './checks/index.ts';
import { loadConfig, type ConfigInput, type FledgeConfig } from './config/index.ts';
import { systemClock, type Clock } from './core/clock.ts';
import type { EngineSettings } from './core/deploy/types.ts';
import { EventBus } from './core/events.ts';
import { HealthMonitor } from './health/health-monitor.ts';
import { createLogger, type Logger } from './logger.ts';
import { CheckRunner } from './reconciler/checks.ts';
import { guardRuntime, Leadership } from './reconciler/leadership.ts';
import { ReconcileLoop } from './reconciler/loop.ts';
import { Relay } from './reconciler/relay.ts';
import { createHosts, type HostRegistry } from './hosts/index.ts';
import { machineIdentity } from './runtimes/process/process-runtime.ts';
import { ephemeralOverlap } from './runtimes/process/ports.ts';
import type { Runtime } from './runtimes/types.ts';
import { createStore } from './store/index.ts';
import { urlHasPassword } from './store/spec.ts';
import { fencedStore, type Lease, type SchedulerInfo, type Store } from './store/types.ts';
import { FLEDGE_VERSION } from './version.ts';

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
}

export async function startServer(config: FledgeConfig, options: StartOptions = {}): Promise<FledgeServer> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const clock = options.clock ?? systemClock;
  mkdirSync(config.dataDir, { recursive: true });
  const releaseLock = acquireLock(config.dataDir);
  const schedulerId = `${hostname().slice(0, 24)}-${process.pid}-${randomBytes(3).toString('hex')}`;
  // What was opened so far, closed in reverse if start-up fails half-way (a taken port...).
  const opened: (() => Promise<void>)[] = [];
  try {
    const store = await createStore(
      config.store.kind === 'postgres'
        ? { kind: 'postgres', url: config.store.url, schedulerId, logger }
        : { kind: 'sqlite', file: config.store.file },
      () => clock.now(),
    );
    opened.push(() => store.close());
    const late: { relay?: Relay; leadership?: Leadership<LeaderTerm> } = {};
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
      serverChecks: () => serverChecks.map((c) => c.name),
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
    });
    // Listen before re-adopting tasks, so a taken port fails start-up before anything is touched.
    const server = await listen(app.fetch, config.host, config.port);
    opened.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = config.advertiseUrl ?? `http://${config.host}:${port}`;
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
        const checks = new CheckRunner({ store: termStore, clock, logger, factories: checkFactories, serverChecks });
        const settings: EngineSettings = {
          killGraceMillis: config.killGraceSeconds * 1000,
          backoffBaseMillis: 1000,
          backoffMaxMillis: 60_000,
          capacityRetryMillis: 1000,
          decisionLogLimit: 500,
          launchBatchSize: 100,
          serverChecks: checks.serverCheckNames,
          serverCheckIntervalSeconds: checks.serverCheckIntervalSeconds,
          defaultAgentPlacement: config.defaultAgentPlacement,
          ...options.settings,
        };
        // The monitor reports to the loop, which is built with the monitor: the callback binds late.
        const health = new HealthMonitor({
          now: () => clock.now(),
          onResult: (taskId, result, assessment) =>
            void loop.executor
              .onHealthResult(taskId, result, assessment)
              .catch((err: unknown) => logger.warn({ err, taskId }, 'could not record a health result')),
          onError: (err: unknown) => logger.warn({ err }, 'health result handler failed'),
        });
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
        });
        parts.push(() => loop.close());
        await loop.start();
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
      { url, lb: config.lb, lbPort, dataDir: config.dataDir, store: store.description, schedulerId, leader: lead.leading },
      'fledge is serving',
    );
    return {
      config,
      url,
      ...(lbPort !== undefined ? { lbUrl: `http://${config.host}:${lbPort}` } : {}),
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
      host: config.host,
      port: config.lbPort,
      drainTimeoutMs: config.drainTimeoutSeconds * 1000,
      logger,
    });
  }
  if (config.lb !== 'haproxy') return undefined;
  return createBalancer({
    kind: 'haproxy',
    mode: config.haproxy.mode,
    dataDir: config.dataDir,
    bin: config.haproxy.bin,
    host: config.host,
    port: config.lbPort,
    ...(config.haproxy.runtimeSocket !== undefined ? { runtimeSocket: config.haproxy.runtimeSocket } : {}),
    ...(config.haproxy.configPath !== undefined ? { configPath: config.haproxy.configPath } : {}),
    ...(config.haproxy.masterSocket !== undefined ? { masterSocket: config.haproxy.masterSocket } : {}),
    reconcileIntervalMs: config.haproxy.reconcileSeconds * 1000,
    drainTimeoutMs: config.drainTimeoutSeconds * 1000,
    mayAct: guard,
    logger,
  });
}

function listen(fetch: Parameters<typeof serve>[0]['fetch'], hostname: string, port: number): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, hostname, port }, () => resolve(server));
    server.once('error', reject);
  });
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
  writeFileSync(file, String(process.pid));
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
  if (typeof flags.store === 'string' && urlHasPassword(flags.store)) {
    logger.warn(
      {},
      'the --store URL carries a password, which other users of this machine can read in the process list; give it in FLEDGE_STORE, PGPASSWORD or ~/.pgpass instead',
    );
  }
  const server = await startServer(config, { logger });
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
