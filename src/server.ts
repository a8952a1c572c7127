// Composition root: builds Fledge from its config and runs it in the foreground.
import { readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
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
import { ReconcileLoop } from './reconciler/loop.ts';
import { createRuntime } from './runtimes/index.ts';
import { ephemeralOverlap } from './runtimes/process/ports.ts';
import type { Runtime } from './runtimes/types.ts';
import { createStore } from './store/index.ts';
import { randomUUID } from 'node:crypto';
import { TaskRetention } from './reconciler/retention.ts';
import { WebhookDeliverer } from './webhooks/deliverer.ts';
import { webhookAllowList } from './webhooks/allow.ts';
import type { Store } from './store/types.ts';

export interface FledgeServer {
  config: FledgeConfig;
  url: string;
  lbUrl?: string;
  store: Store;
  runtime: Runtime;
  balancer?: Balancer;
  loop: ReconcileLoop;
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
  // What was opened so far, closed in reverse if start-up fails half-way (a taken port...).
  const opened: (() => Promise<void>)[] = [];
  try {
    const store = await createStore({ kind: 'sqlite', dataDir: config.dataDir }, () => clock.now());
    opened.push(() => store.close());
    const runtime = createRuntime({
      kind: 'process',
      dataDir: config.dataDir,
      portRange: config.portRange,
      capacity: config.capacity,
      logger,
    });
    opened.push(() => runtime.close());
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
            host: config.host,
            port: config.lbPort,
            drainTimeoutMs: config.drainTimeoutSeconds * 1000,
            logger,
          })
        : config.lb === 'haproxy'
          ? await createBalancer({
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
      scheduleTimeZone: config.jobs.scheduleTimeZone,
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
      maxQueuedRuns: config.jobs.maxQueuedRuns,
      newRunId: () => randomUUID(),
    });
    const app = createApp({
      store,
      service,
      runtime,
      events,
      clock,
      containers: runtime.capabilities().containers,
      logger,
      webhookAllow: webhookAllowList(config.webhooks.allow),
    });
    const webhooks = new WebhookDeliverer({
      store,
      clock,
      logger,
      timeoutMillis: config.webhooks.timeoutSeconds * 1000,
      retryMaxMillis: config.webhooks.retryMaxSeconds * 1000,
      maxAgeMillis: config.webhooks.maxAgeSeconds * 1000,
    });
    // Every published change may have queued deliveries (written in its transaction).
    events.subscribe(() => webhooks.wake());
    const retention = new TaskRetention({
      store,
      runtime,
      clock,
      logger,
      maxAgeMillis: config.jobs.taskHistoryMaxAgeHours * 3_600_000,
      keepPerRequest: config.jobs.taskHistoryPerRequest,
    });
    // Listen before re-adopting tasks, so a taken port fails start-up before anything is touched.
    const server = await listen(app.fetch, config.host, config.port);
    opened.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    opened.push(() => loop.close());
    await loop.start();
    webhooks.start();
    opened.push(() => webhooks.close());
    retention.start();
    opened.push(() => retention.close());
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = `http://${config.host}:${port}`;
    const lbAddress = balancer && 'address' in balancer ? (balancer as { address(): { port: number } }).address() : undefined;
    logger.info({ url, lb: config.lb, lbPort: lbAddress?.port, dataDir: config.dataDir }, 'fledge is serving');
    return {
      config,
      url,
      ...(lbAddress ? { lbUrl: `http://${config.host}:${lbAddress.port}` } : {}),
      store,
      runtime,
      ...(balancer ? { balancer } : {}),
      loop,
      async close() {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          // SSE streams keep connections open; do not wait for them.
          (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        });
        await webhooks.close();
        await retention.close();
        await loop.close();
        await balancer?.close();
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
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
