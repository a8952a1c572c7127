/*
 * The HAProxy balancer: the Balancer interface over HAProxy's runtime API.
 *
 * Each service owns one backend "slot" (fledge_b<N>, balance roundrobin). Routes live in two
 * maps (exact `/api` with map_str, `/api/…` with map_beg, longest prefix wins), updated at
 * runtime with versioned map commits (prepare / add @ver / commit: atomic) and rewritten on
 * disk. Servers are added with `add server` + `enable server`, drained with `set server …
 * state drain` until their sessions reach zero (bounded by the drain timeout), then put in
 * maintenance and deleted. The configuration keeps spare empty slots so a new service needs
 * no reload; when the spares run out, the configuration gains more and HAProxy reloads
 * seamlessly (master-worker, listeners passed over the stats socket).
 *
 * After every change the configuration, maps and a state file are rewritten from the same
 * state, so what is on disk is what is live. A periodic reconcile compares HAProxy's servers
 * and maps with that state and repairs drift in either direction.
 *
 * Managed: Fledge runs HAProxy (process.ts) and restarts it from the written configuration.
 * HAProxy outlives Fledge: close() leaves it serving, and the next start adopts it (state.json
 * rebuilds the state, a reconcile repairs any drift, a reload only when the backends differ).
 * shutdown() (or stopOnClose) stops it.
 * Attached: Fledge drives an HAProxy the user runs with the configuration Fledge writes,
 * through its stats socket (and its master CLI, when given, for reloads).
 */
import net from 'node:net';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../logger.ts';
import { normalizeBasePath } from '../base-path.ts';
import { DrainBook, type DrainWaits } from '../drains.ts';
import { clientLimits, type ClientLimits } from '../limits.ts';
import { OperationBook, statusOf } from '../operations.ts';
import { TrafficRecorder } from '../traffic.ts';
import type { RoutingRules } from '../../core/model.ts';
import type {
  Balancer,
  BalancerStats,
  LbOperationStatus,
  LbRouting,
  LbService,
  ServiceTraffic,
  TrafficTotal,
  TrafficWindow,
  Upstream,
  UpstreamEvent,
} from '../types.ts';
import { upstreamWeight } from '../types.ts';
import { invalidOperation } from '../validate.ts';
import { mapEntries, serverName, serverParams, slotName } from './config.ts';
import { attachedPaths, configStructure, HaproxyFiles, managedPaths, readIfExists, type HaproxyPaths } from './files.ts';
import { upstreamEvents, type ObservedServer } from './observe.ts';
import { HaproxyProcess } from './process.ts';
import { backendsToCheck, mapDiffers, planReconcile, type ReconcileStep } from './reconcile.ts';
import { HaproxyRuntime } from './runtime.ts';
import { HaproxyCommandError, type StatRow } from './runtime-api.ts';
import { deployOf, HaproxyState, reweighed, type Draining, type HaproxyDrain, type ServerEntry, type ServiceEntry } from './state.ts';
import { HaproxyTrafficLog } from './traffic-log.ts';

/** Client limits (limits.ts) are written into the configuration (maxconn, tune.bufsize, timeouts). */
export interface HaproxyBalancerOptions extends Partial<ClientLimits> {
  /** managed (default): Fledge runs HAProxy; attached: the user does */
  mode?: 'managed' | 'attached';
  /** managed: config, maps, sockets and state go to <dataDir>/haproxy */
  dataDir?: string;
  /** managed: the haproxy binary; default "haproxy" on PATH */
  bin?: string;
  /** the frontend address; default 127.0.0.1:7080 (0 picks a free port) */
  host?: string;
  port?: number;
  /** attached: HAProxy's stats socket (level admin) */
  runtimeSocket?: string;
  /** attached: the configuration file Fledge writes (maps and state go next to it) */
  configPath?: string;
  /** attached: HAProxy's master CLI socket, needed when a new service requires a reload */
  masterSocket?: string;
  /** how long a removed server may keep sessions before they are shut; default 30 s */
  drainTimeoutMs?: number;
  /** how often HAProxy's servers are compared with Fledge's state; default 10 s, 0 = never */
  reconcileIntervalMs?: number;
  /** empty backends kept ready for new services; default 8 */
  spareBackends?: number;
  /** how often draining servers' sessions are polled; default 100 ms */
  drainPollMs?: number;
  /** bound on one runtime API command; default 5 s */
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** `timeout server`: an upstream silent this long fails the attempt; default 15 s */
  upstreamTimeoutMs?: number;
  /** passive protection: errors in a row that mark a server down (observe layer7); 0 = never; default 3 */
  ejectAfterFailures?: number;
  /** how often a server marked down is checked (a TCP connect) to put it back; default 1 s */
  ejectBaseMs?: number;
  /** how often server states are read for upstream events (onUpstreamEvent); default 500 ms */
  observePollMs?: number;
  maxRememberedOperations?: number;
  /** proxies (IPs, CIDR ranges) whose X-Forwarded-* headers are kept; others' are deleted */
  trustForwardedFrom?: readonly string[];
  /**
   * managed: stop HAProxy when the balancer closes. Default false: HAProxy keeps serving while
   * Fledge is down and the next Fledge adopts it. shutdown() stops it either way.
   */
  stopOnClose?: boolean;
  /**
   * Checked just before anything that changes HAProxy or its files: false refuses the change
   * (a scheduler that lost its leadership must not touch an HAProxy the new leader drives).
   */
  mayAct?: () => boolean;
  logger?: Logger;
  /** the clock of the traffic counters (tests) */
  now?: () => number;
}

export interface HaproxyBalancer extends Balancer {
  stats(): BalancerStats;
  onUpstreamEvent(listener: (event: UpstreamEvent) => void): () => void;
  address(): { host: string; port: number };
  /** Compare HAProxy with Fledge's state and repair drift; returns the repairs made. */
  reconcile(): Promise<string[]>;
  /** Where the runtime API, configuration and maps are. */
  readonly paths: HaproxyPaths;
  /** managed: master and worker pids (tests kill them); attached: [] */
  pids(): Promise<number[]>;
  /** managed: how many times HAProxy was restarted after dying */
  restarts(): number;
  /** managed: the HAProxy running now was left by an earlier Fledge and adopted at start */
  adopted(): boolean;
  /** close(), and stop a managed HAProxy (close() alone leaves it running). Attached: close(). */
  shutdown(): Promise<void>;
}

export async function createHaproxyBalancer(options: HaproxyBalancerOptions): Promise<HaproxyBalancer> {
  const host = options.host ?? '127.0.0.1';
  const port = (options.port ?? 7080) === 0 ? (leftoverPort(options, host) ?? (await resolvePort(host, 0))) : (options.port ?? 7080);
  const balancer = new HaproxyRuntimeBalancer(options, port);
  await balancer.start();
  return balancer;
}

/**
 * Port 0 (any free port) with a managed HAProxy of this data dir still running from an earlier
 * Fledge: keep the port it serves on, so adopting it changes nothing for clients.
 */
function leftoverPort(options: HaproxyBalancerOptions, host: string): number | undefined {
  if ((options.mode ?? 'managed') !== 'managed' || !options.dataDir) return undefined;
  const dir = join(options.dataDir, 'haproxy');
  const config = readIfExists(join(dir, 'haproxy.cfg'));
  const pid = Number(readIfExists(join(dir, 'haproxy.pid'))?.trim().split('\n')[0]);
  if (!config || !Number.isInteger(pid) || pid <= 0 || !readIfExists(`/proc/${pid}/cmdline`)?.includes('haproxy')) return undefined;
  const bind = /^\s*bind (\S+):(\d+)\s*$/m.exec(config);
  return bind && bind[1] === host ? Number(bind[2]) : undefined;
}

async function resolvePort(host: string, port: number): Promise<number> {
  if (port !== 0) return port;
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
  const chosen = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return chosen;
}

class HaproxyRuntimeBalancer implements HaproxyBalancer {
  readonly paths: HaproxyPaths;
  readonly #mode: 'managed' | 'attached';
  readonly #host: string;
  readonly #port: number;
  readonly #reconcileIntervalMs: number;
  readonly #spare: number;
  readonly #drainPollMs: number;
  readonly #observePollMs: number;
  /** passive protection on: servers carry connect checks, and their states are polled for events */
  readonly #protected: boolean;
  readonly #upstreamListeners = new Set<(event: UpstreamEvent) => void>();
  /** the last status seen per `backend/server` (show stat), for ejection events */
  readonly #serverStatus = new Map<string, string>();
  #observeTimer: NodeJS.Timeout | undefined;
  readonly #logger: Logger;
  readonly #ops: OperationBook<DrainWaits<Draining>>;
  readonly #drains: DrainBook<Draining>;
  readonly #state = new HaproxyState();
  readonly #files: HaproxyFiles;
  readonly #runtime: HaproxyRuntime;
  /** operations whose changes are being sent to HAProxy */
  readonly #applying = new Set<{ serviceId: string; add: Upstream[]; remove: Upstream[] }>();
  readonly #process: HaproxyProcess | undefined;
  readonly #stopOnClose: boolean;
  readonly #mayAct: () => boolean;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  #drainTimer: NodeJS.Timeout | undefined;
  #polling = false;
  #reconcileTimer: NodeJS.Timeout | undefined;
  #lastStats = new Map<string, StatRow>();
  readonly #traffic: TrafficRecorder;
  readonly #trafficLog: HaproxyTrafficLog;
  /** servers deleted lately, by backend/server: their last log lines may still arrive */
  readonly #removed = new Map<string, { serviceId: string; upstream: Upstream; at: number }>();

  constructor(options: HaproxyBalancerOptions, port: number) {
    this.#mode = options.mode ?? 'managed';
    this.#host = options.host ?? '127.0.0.1';
    this.#port = port;
    const drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    this.#reconcileIntervalMs = options.reconcileIntervalMs ?? 10_000;
    this.#spare = Math.max(1, options.spareBackends ?? 8);
    this.#drainPollMs = options.drainPollMs ?? 100;
    const commandTimeoutMs = options.commandTimeoutMs ?? 5_000;
    const params = serverParams(options.ejectAfterFailures ?? 3, options.ejectBaseMs ?? 1_000);
    this.#protected = params !== '';
    this.#observePollMs = options.observePollMs ?? 500;
    this.#logger = options.logger ?? silentLogger;
    this.#ops = new OperationBook(this.#logger, options.maxRememberedOperations);
    // Drain timeouts are checked by the poll (it knows the sessions left), not by a timer.
    this.#drains = new DrainBook(this.#ops, { timeoutMs: drainTimeoutMs });
    this.#stopOnClose = options.stopOnClose ?? false;
    this.#mayAct = options.mayAct ?? (() => true);

    if (this.#mode === 'managed') {
      if (!options.dataDir) throw new Error('the managed haproxy balancer needs a dataDir');
      const { pidFile, logFile, ...paths } = managedPaths(options.dataDir);
      this.paths = paths;
      this.#process = new HaproxyProcess({
        bin: options.bin ?? 'haproxy',
        configPath: paths.configPath,
        statsSocket: paths.runtimeSocket,
        masterSocket: paths.masterSocket,
        pidFile,
        logFile,
        logger: this.#logger,
        writeConfig: () => this.#files.write(),
        onRestarted: () => this.#afterRestart(),
      });
    } else {
      if (!options.runtimeSocket || !options.configPath)
        throw new Error('the attached haproxy balancer needs runtimeSocket and configPath');
      this.paths = attachedPaths(options.runtimeSocket, options.configPath, options.masterSocket);
      this.#process = undefined;
    }
    const guard = (what: string) => this.#assertMayAct(what);
    this.#files = new HaproxyFiles(
      this.paths,
      this.#state,
      {
        masterWorker: this.#mode === 'managed',
        bindHost: this.#host,
        bindPort: this.#port,
        hardStopAfterMs: drainTimeoutMs + 10_000,
        connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
        serverTimeoutMs: options.upstreamTimeoutMs ?? 15_000,
        serverParams: params,
        limits: clientLimits(options),
        trustForwardedFrom: options.trustForwardedFrom ?? [],
      },
      guard,
      this.#logger,
    );
    this.#runtime = new HaproxyRuntime({
      runtimeSocket: this.paths.runtimeSocket,
      ...(this.paths.masterSocket ? { masterSocket: this.paths.masterSocket } : {}),
      commandTimeoutMs,
      serverParams: params,
      guard,
      process: this.#process,
      closed: () => this.#closed,
    });
    this.#traffic = new TrafficRecorder(options.now);
    this.#trafficLog = new HaproxyTrafficLog({
      socketPath: this.paths.runtimeSocket,
      resolve: (backend, server) => this.#resolveServer(backend, server),
      onRecord: (record) => this.#traffic.record(record),
      logger: this.#logger,
      commandTimeoutMs,
    });
  }

  async start(): Promise<void> {
    const state = this.#state;
    this.#files.load();
    this.#restartDrains();
    // At least one spare backend at start, like at runtime (a full configuration gains a batch).
    // Restarting with spares left changes nothing, so an adopted HAProxy needs no reload.
    if (state.slots < state.usedSlots() + 1) state.slots = state.usedSlots() + this.#spare;
    let fresh = false;
    if (this.#process) {
      const before = readIfExists(this.paths.configPath);
      if ((await this.#process.start()) === 'adopted') await this.#afterAdopt(before);
      else fresh = true;
    } else {
      // Attached: write what HAProxy should run; reload only when it lacks backends (another
      // scheduler added a batch, or it was started from an older file), then repair servers and
      // maps to match the state, without a reload.
      this.#files.write();
      await this.#runtime.show('show info');
      const live = await this.#runtime.backends();
      const missing = Array.from({ length: state.slots }, (_, i) => slotName(i)).filter((b) => !live.has(b));
      if (missing.length > 0 && this.paths.masterSocket) {
        this.#logger.info({ missingBackends: missing }, 'the attached haproxy lacks backends: reloading it seamlessly');
        await this.#runtime.attachedReload(slotName(state.slots - 1));
        await this.#reapplyServerStates();
        this.#trafficLog.reconnect();
      } else if (missing.length > 0) {
        this.#logger.warn({ missingBackends: missing }, 'the attached haproxy lacks backends and no master socket was given to reload it');
      }
      await this.reconcile();
    }
    this.#scheduleDrainPoll();
    this.#trafficLog.start({ fresh });
    if (this.#reconcileIntervalMs > 0) {
      this.#reconcileTimer = setInterval(() => {
        this.reconcile().catch((err: unknown) => this.#logger.warn({ err }, 'haproxy reconcile failed'));
      }, this.#reconcileIntervalMs);
      this.#reconcileTimer.unref();
    }
    this.#logger.info({ mode: this.#mode, host: this.#host, port: this.#port, config: this.paths.configPath }, 'haproxy balancer ready');
  }

  address(): { host: string; port: number } {
    return { host: this.#host, port: this.#port };
  }

  async pids(): Promise<number[]> {
    return this.#process ? this.#process.pids() : [];
  }

  restarts(): number {
    return this.#process?.restarts ?? 0;
  }

  adopted(): boolean {
    return this.#process?.adopted ?? false;
  }

  // ---- operations ------------------------------------------------------------------------

  async apply(operationId: string, service: LbService, add: Upstream[], remove: Upstream[]): Promise<LbOperationStatus> {
    const known = this.#ops.status(operationId);
    if (known) return known;
    if (this.#closed) throw new Error('the haproxy balancer is closed');

    const op = this.#ops.create(operationId, service.serviceId, { pending: new Set() });
    const invalid = invalidOperation(service, add, remove, (basePath) => this.#state.owner(basePath)) ?? unsafeForRuntimeApi(service, add);
    if (invalid) {
      this.#logger.warn({ operationId, serviceId: service.serviceId, reason: invalid }, 'LB operation rejected');
      this.#ops.finish(op, 'FAILED', invalid);
      return statusOf(op);
    }
    this.#ops.emit(op);
    // Like the builtin, upstreams() shows the operation's effect from the moment it is applied;
    // HAProxy follows within milliseconds (the removed task lives on until its drain is done).
    const inFlight = { serviceId: service.serviceId, add, remove };
    this.#applying.add(inFlight);
    const t0 = Date.now();
    await this.#serial(async () => {
      try {
        const entry = await this.#serviceEntry(service);
        // Write-ahead: on disk before HAProxy is told.
        this.#files.intent = { slot: entry.slot, add, remove: new Set(remove.map((u) => u.taskId)) };
        this.#files.write();
        for (const upstream of add) await this.#addServer(entry, upstream);
        for (const upstream of remove) {
          const server = entry.servers.get(upstream.taskId);
          if (!server) continue;
          this.#drains.wait(op, server.draining ?? (await this.#startDrain(entry, server)));
        }
        await this.#applyRouting(entry, service.routing);
        this.#logger.info(
          { operationId, serviceId: service.serviceId, add: add.map((u) => u.taskId), remove: remove.map((u) => u.taskId) },
          'LB operation applied',
        );
      } catch (err) {
        this.#logger.warn({ err, operationId, serviceId: service.serviceId }, 'LB operation failed in haproxy');
        // The drains it started go on (the state file names them): nobody waits for them.
        this.#drains.release(op);
        this.#ops.finish(op, 'FAILED', errorMessage(err));
      } finally {
        this.#files.intent = undefined;
        this.#files.persist();
        this.#applying.delete(inFlight);
      }
    });
    this.#logger.debug({ operationId, ms: Date.now() - t0 }, 'haproxy changes applied');
    if (op.state === 'WAITING' && op.data.pending.size === 0) this.#ops.finish(op, 'SUCCESS');
    else if (op.state === 'WAITING') await this.#pollDrains();
    return statusOf(op);
  }

  async state(operationId: string): Promise<LbOperationStatus | undefined> {
    return this.#ops.status(operationId);
  }

  cancel(operationId: string): Promise<LbOperationStatus | undefined> {
    return this.#ops.cancel(operationId, (op) =>
      this.#serial(async () => {
        if (op.state !== 'WAITING') return;
        for (const drain of this.#drains.release(op)) {
          if (drain.target.finishing) continue;
          this.#endDrain(drain);
          try {
            await this.#runtime.setState(`${drain.target.service.slot}/${drain.target.server.name}`, 'ready');
          } catch (err) {
            // the reconcile puts it back; the cancel itself stands
            this.#logger.warn({ err, operationId }, 'could not put a draining server back into rotation');
          }
        }
        // Servers back in rotation are routed to again.
        await this.#syncRoutingMaps().catch((err: unknown) =>
          this.#logger.warn({ err, operationId }, 'could not rewrite the routing maps'),
        );
        this.#files.persist();
        this.#ops.finish(op, 'CANCELED', 'canceled; upstreams still draining were put back into rotation');
        this.#logger.info({ operationId }, 'LB operation canceled');
      }),
    );
  }

  async upstreams(serviceId: string): Promise<Upstream[]> {
    const entry = this.#state.services.get(serviceId);
    const members = new Map<string, Upstream>();
    for (const s of entry?.servers.values() ?? []) if (!s.draining) members.set(s.upstream.taskId, s.upstream);
    for (const op of this.#applying) {
      if (op.serviceId !== serviceId) continue;
      for (const u of op.add) members.set(u.taskId, u);
      for (const u of op.remove) members.delete(u.taskId);
    }
    return [...members.values()].map((u) => ({ ...u }));
  }

  onChange(listener: (status: LbOperationStatus) => void): () => void {
    return this.#ops.onChange(listener);
  }

  onUpstreamEvent(listener: (event: UpstreamEvent) => void): () => void {
    this.#upstreamListeners.add(listener);
    this.#scheduleObserve();
    return () => this.#upstreamListeners.delete(listener);
  }

  #scheduleObserve(): void {
    if (this.#observeTimer || this.#closed || !this.#protected || this.#upstreamListeners.size === 0) return;
    this.#observeTimer = setTimeout(() => {
      void this.#observeServers()
        .catch((err: unknown) => this.#logger.debug({ err }, 'could not read haproxy server states'))
        .finally(() => {
          this.#observeTimer = undefined;
          this.#scheduleObserve();
        });
    }, this.#observePollMs);
    this.#observeTimer.unref();
  }

  /** HAProxy marked a server down after errors in a row (or back up): tell the listeners. */
  async #observeServers(): Promise<void> {
    if (this.#state.services.size === 0) return;
    const rows = await this.#runtime.stat();
    const known = new Map<string, ObservedServer>();
    for (const entry of this.#state.services.values()) {
      for (const server of entry.servers.values()) {
        const observed = { serviceId: entry.serviceId, taskId: server.upstream.taskId, draining: server.draining !== undefined };
        known.set(`${entry.slot}/${server.name}`, observed);
      }
    }
    for (const event of upstreamEvents(rows, known, this.#serverStatus)) this.#emitUpstream(event);
  }

  #emitUpstream(event: UpstreamEvent): void {
    this.#logger.warn(
      { ...event },
      event.kind === 'EJECTED' ? 'haproxy took a failing server out of rotation' : 'haproxy put a server back',
    );
    for (const listener of [...this.#upstreamListeners]) {
      try {
        listener(event);
      } catch (err) {
        this.#logger.error({ err, taskId: event.taskId }, 'balancer upstream listener threw');
      }
    }
  }

  stats(): BalancerStats {
    const out: BalancerStats = {};
    for (const [serviceId, entry] of this.#state.services) {
      out[serviceId] = {
        basePath: entry.basePath,
        upstreams: [...entry.servers.values()].map((s) => {
          const row = this.#lastStats.get(`${entry.slot}/${s.name}`);
          return { ...s.upstream, inRotation: !s.draining, inFlight: row?.scur ?? 0, total: row?.stot ?? 0 };
        }),
      };
    }
    return out;
  }

  async traffic(serviceId: string, window: TrafficWindow): Promise<ServiceTraffic> {
    return this.#traffic.window(serviceId, window);
  }

  trafficTotals(): TrafficTotal[] {
    return this.#traffic.totals();
  }

  /** The task a log line's backend/server stands for: a live server, or one deleted lately. */
  #resolveServer(backend: string, server: string): { serviceId: string; taskId: string; deployId?: string } | undefined {
    const live = this.#state.serverAt(backend, server);
    if (live) return { serviceId: live.service.serviceId, taskId: live.server.upstream.taskId, ...deployOf(live.server.upstream) };
    const gone = this.#removed.get(`${backend}/${server}`);
    return gone ? { serviceId: gone.serviceId, taskId: gone.upstream.taskId, ...deployOf(gone.upstream) } : undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#trafficLog.close();
    this.#ops.clearListeners();
    this.#upstreamListeners.clear();
    clearInterval(this.#reconcileTimer);
    clearTimeout(this.#drainTimer);
    clearTimeout(this.#observeTimer);
    await this.#queue.catch(() => undefined);
    if (this.#stopOnClose) await this.#process?.stop();
    else this.#process?.release();
  }

  async shutdown(): Promise<void> {
    await this.close();
    await this.#process?.stop();
  }

  // ---- reconcile ---------------------------------------------------------------------------

  async reconcile(): Promise<string[]> {
    if (this.#closed) return [];
    return this.#serial(async () => {
      const live = await this.#runtime.serversState();
      const wanted = [...this.#state.services.values()].flatMap((entry) =>
        [...entry.servers.values()].map((server) => ({
          backend: entry.slot,
          name: server.name,
          upstream: server.upstream,
          draining: server.draining !== undefined,
        })),
      );
      const missing = new Set<string>();
      for (const backend of backendsToCheck(wanted, live)) if (!(await this.#runtime.backendExists(backend))) missing.add(backend);
      const repairs: string[] = [];
      for (const step of planReconcile(wanted, live, missing)) {
        const repair = await this.#runReconcileStep(step);
        if (repair !== undefined) repairs.push(repair);
      }
      if (await this.#mapsDrifted()) {
        await this.#syncMaps();
        repairs.push('route maps rewritten to match Fledge');
      }
      for (const repair of repairs) this.#logger.warn({ repair }, 'haproxy drift repaired');
      if (repairs.length > 0) this.#files.persist();
      return repairs;
    });
  }

  /** One step of planReconcile; returns the repair made. */
  async #runReconcileStep(step: ReconcileStep): Promise<string | undefined> {
    const runtime = this.#runtime;
    switch (step.kind) {
      case 'add':
      case 'recreate':
        if (step.kind === 'recreate') await runtime.deleteServer(step.backend, step.name, true);
        await runtime.addServer(step.key, step.upstream);
        if (step.enable) await runtime.enable(step.key);
        return step.repair;
      case 'note':
        return step.repair;
      case 'ready':
        await runtime.setState(step.key, 'ready');
        return step.repair;
      case 'weight':
        await runtime.setWeight(step.key, step.weight);
        return step.repair;
      case 'drain':
        await runtime.setState(step.key, 'drain');
        return undefined;
      case 'remove-unknown':
        // No new requests at once; requests in flight on it finish, and it is deleted when idle
        // (HAProxy refuses to delete a server with connections) — here or at a later reconcile.
        return (await runtime.deleteIdleServer(step.backend, step.name))
          ? `deleted server ${step.key}, unknown to Fledge`
          : `server ${step.key}, unknown to Fledge, out of rotation; deleted once its requests finish`;
    }
  }

  async #mapsDrifted(): Promise<boolean> {
    const { exact, prefix } = mapEntries(this.#files.backends());
    const { routing, servers } = this.#state.routingEntries();
    for (const [file, entries] of [
      [this.paths.exactMap, exact],
      [this.paths.prefixMap, prefix],
      ...(this.#state.routed()
        ? ([
            [this.paths.routingMap, routing],
            [this.paths.routingServersMap, servers],
          ] as const)
        : []),
    ] as const) {
      if (mapDiffers(await this.#runtime.mapEntries(file), entries)) return true;
    }
    return false;
  }

  // ---- internals -------------------------------------------------------------------------

  /** One mutation of HAProxy at a time, in order. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** A deleted server's last log lines still count for its task; forgotten after a minute. */
  #noteRemoved(service: ServiceEntry, server: ServerEntry): void {
    const now = Date.now();
    for (const [key, r] of this.#removed) if (now - r.at > 60_000) this.#removed.delete(key);
    this.#removed.set(`${service.slot}/${server.name}`, { serviceId: service.serviceId, upstream: server.upstream, at: now });
    this.#traffic.retire(service.serviceId, server.upstream.taskId);
  }

  #assertMayAct(what: string): void {
    if (!this.#mayAct()) throw new Error(`not the leader (any more): refused to ${what}`);
  }

  async #serviceEntry(service: LbService): Promise<ServiceEntry> {
    const state = this.#state;
    const basePath = normalizeBasePath(service.basePath);
    const existing = state.services.get(service.serviceId);
    if (existing) {
      if (existing.basePath !== basePath) {
        existing.basePath = basePath;
        await this.#syncMaps();
      }
      return existing;
    }
    const index = state.freeSlot();
    if (index >= state.slots) {
      // No spare backend left: the configuration gains a new batch and HAProxy reloads.
      await this.#growSlots(index + this.#spare);
    }
    const entry: ServiceEntry = { serviceId: service.serviceId, basePath, slot: slotName(index), servers: new Map() };
    state.services.set(service.serviceId, entry);
    try {
      await this.#syncMaps();
    } catch (err) {
      state.services.delete(service.serviceId);
      throw err;
    }
    this.#logger.info({ serviceId: service.serviceId, basePath, backend: entry.slot }, 'haproxy backend assigned to service');
    return entry;
  }

  async #growSlots(slots: number): Promise<void> {
    const before = this.#state.slots;
    this.#state.slots = slots;
    try {
      this.#files.write();
      if (this.#process) await this.#process.reload();
      else if (this.paths.masterSocket) await this.#runtime.attachedReload(slotName(slots - 1));
      else throw new Error('a new service needs a new haproxy backend, which needs a reload: give the attached balancer a masterSocket');
      this.#trafficLog.reconnect();
    } catch (err) {
      this.#state.slots = before;
      this.#files.write();
      throw err;
    }
    // A reloaded worker starts from the configuration: put draining servers back to drain.
    await this.#reapplyServerStates();
  }

  async #reapplyServerStates(): Promise<void> {
    for (const entry of this.#state.services.values()) {
      for (const server of entry.servers.values()) {
        if (server.draining) await this.#runtime.setState(`${entry.slot}/${server.name}`, 'drain').catch(() => undefined);
      }
    }
  }

  async #addServer(entry: ServiceEntry, upstream: Upstream): Promise<void> {
    const existing = entry.servers.get(upstream.taskId);
    if (existing?.draining) {
      // Added back while draining: the newer operation wins; the waiting removals are undone.
      await this.#runtime.setState(`${entry.slot}/${existing.name}`, 'ready');
      const drain = existing.draining;
      this.#endDrain(drain);
      this.#drains.undo(drain, 'removal undone: the upstream was added back by a later operation');
      await this.#reweigh(entry, existing, upstream);
      return;
    }
    if (existing) {
      await this.#reweigh(entry, existing, upstream);
      return;
    }
    const name = serverName(upstream.taskId);
    const key = `${entry.slot}/${name}`;
    try {
      await this.#runtime.addServer(key, upstream);
    } catch (err) {
      // Present in HAProxy already (a restart restored it): take it as it is, enabled below.
      if (!(err instanceof HaproxyCommandError && /Already exists/i.test(err.answer))) throw err;
      await this.#runtime.setWeight(key, upstreamWeight(upstream));
    }
    entry.servers.set(upstream.taskId, { upstream: { ...upstream }, name });
    await this.#runtime.enable(key);
  }

  /** Added again: the server takes the operation's weight (absent = the default) at once. */
  async #reweigh(entry: ServiceEntry, server: ServerEntry, upstream: Upstream): Promise<void> {
    const weight = upstreamWeight(upstream);
    const next = reweighed(server.upstream, upstream);
    if (upstreamWeight(server.upstream) !== weight) await this.#runtime.setWeight(`${entry.slot}/${server.name}`, weight);
    server.upstream = next;
  }

  async #startDrain(entry: ServiceEntry, server: ServerEntry): Promise<HaproxyDrain> {
    await this.#runtime.setState(`${entry.slot}/${server.name}`, 'drain');
    const drain = this.#drains.start({ service: entry, server, finishing: false });
    server.draining = drain;
    this.#scheduleDrainPoll();
    return drain;
  }

  /**
   * The operation's routing for the service: the rules go into the configuration (a seamless
   * reload, only when they differ from the rules already written for this backend), and the
   * routing map turns them on for the deploy — or off, at once, without a reload.
   */
  async #applyRouting(entry: ServiceEntry, routing: LbRouting | undefined): Promise<void> {
    const before = entry.routing;
    if (routing) {
      const rules: RoutingRules = { match: routing.match, ...(routing.sticky ? { sticky: routing.sticky } : {}) };
      if (JSON.stringify(rules) !== JSON.stringify(entry.rules)) {
        const written = entry.rules;
        entry.rules = rules;
        try {
          this.#logger.info({ serviceId: entry.serviceId, backend: entry.slot }, 'new routing rules: reloading haproxy seamlessly');
          await this.#reload();
        } catch (err) {
          entry.rules = written;
          this.#files.persist();
          throw err;
        }
      }
      entry.routing = routing;
    } else {
      delete entry.routing;
    }
    if (before || routing) await this.#syncRoutingMaps();
  }

  /** A seamless reload with the configuration as written now (managed, or attached with a master socket). */
  async #reload(): Promise<void> {
    this.#files.write();
    if (this.#process) await this.#process.reload();
    else if (this.paths.masterSocket) {
      // The rules are live once a new worker answers on the stats socket (maps go to it next).
      const runtime = this.#runtime;
      const before = await runtime.workerPid();
      await runtime.attachedReload(slotName(this.#state.slots - 1));
      const deadline = Date.now() + 10_000;
      for (let pid = await runtime.workerPid(); pid === undefined || pid === before; pid = await runtime.workerPid()) {
        if (Date.now() > deadline) throw new Error('haproxy did not start a worker with the new routing rules');
        await new Promise((r) => setTimeout(r, 50));
      }
    } else throw new Error('new routing rules need an haproxy reload: give the attached balancer a masterSocket');
    this.#trafficLog.reconnect();
    await this.#reapplyServerStates();
  }

  /** Both route maps, atomically (a new version filled, then committed) and on disk. */
  async #syncMaps(): Promise<void> {
    const { exact, prefix } = mapEntries(this.#files.backends());
    await this.#runtime.commitMaps([
      [this.paths.exactMap, exact],
      [this.paths.prefixMap, prefix],
    ]);
    await this.#syncRoutingMaps();
  }

  /** The routing maps (routing on, each version's servers in rotation, each server's deploy). */
  async #syncRoutingMaps(): Promise<void> {
    if (!this.#state.routed()) return;
    const { routing, servers } = this.#state.routingEntries();
    await this.#runtime.commitMaps([
      [this.paths.routingMap, routing],
      [this.paths.routingServersMap, servers],
    ]);
  }

  // ---- drains ----------------------------------------------------------------------------

  /** Drains recorded in the state file (a restart): keep waiting for them, nobody waits on them. */
  #restartDrains(): void {
    for (const entry of this.#state.services.values()) {
      for (const server of entry.servers.values()) {
        if (!server.wasDraining || server.draining) continue;
        server.draining = this.#drains.start({ service: entry, server, finishing: false });
      }
    }
  }

  #endDrain(drain: HaproxyDrain): void {
    const { server } = drain.target;
    this.#drains.end(drain);
    if (server.draining === drain) server.draining = undefined;
    server.wasDraining = false;
  }

  #scheduleDrainPoll(): void {
    if (this.#drainTimer || this.#closed || this.#drains.size === 0) return;
    this.#drainTimer = setTimeout(() => {
      this.#drainTimer = undefined;
      void this.#pollDrains().finally(() => this.#scheduleDrainPoll());
    }, this.#drainPollMs);
  }

  /** Sessions per server across the current worker and any old ones still finishing. */
  async #sessions(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const count = (rows: StatRow[]) => {
      for (const r of rows) out.set(`${r.backend}/${r.server}`, (out.get(`${r.backend}/${r.server}`) ?? 0) + r.scur + r.qcur);
    };
    const rows = await this.#runtime.stat();
    this.#lastStats = new Map(rows.map((r) => [`${r.backend}/${r.server}`, r]));
    count(rows);
    if (this.paths.masterSocket) {
      const old = this.#process ? await this.#process.oldWorkers() : [];
      for (const pid of old) count(await this.#runtime.oldWorkerStat(pid));
    }
    return out;
  }

  async #pollDrains(): Promise<void> {
    if (this.#polling || this.#drains.size === 0 || this.#closed) return;
    this.#polling = true;
    try {
      let sessions: Map<string, number>;
      try {
        sessions = await this.#sessions();
      } catch (err) {
        this.#logger.debug({ err }, 'could not read haproxy sessions');
        return;
      }
      const now = Date.now();
      for (const drain of this.#drains.active()) {
        const left = sessions.get(`${drain.target.service.slot}/${drain.target.server.name}`) ?? 0;
        if (left === 0) await this.#finishDrain(drain, 'drained');
        else if (this.#drains.expired(drain, now)) await this.#finishDrain(drain, 'timeout', left);
      }
    } finally {
      this.#polling = false;
    }
  }

  /** The server is gone: no session left, or the drain timeout shut the rest. */
  async #finishDrain(drain: HaproxyDrain, why: 'drained' | 'timeout', left = 0): Promise<void> {
    await this.#serial(async () => {
      const target = drain.target;
      if (target.server.draining !== drain || target.finishing) return;
      target.finishing = true;
      try {
        if (why === 'timeout') {
          this.#logger.warn(
            { serviceId: target.service.serviceId, taskId: target.server.upstream.taskId, cut: left },
            'drain timed out: shutting sessions',
          );
        }
        await this.#runtime.deleteServer(target.service.slot, target.server.name, why === 'timeout');
      } catch (err) {
        // Sessions arrived between the poll and the delete, or HAProxy is restarting: next poll.
        target.finishing = false;
        this.#logger.debug({ err }, 'draining server not deleted yet');
        return;
      }
      this.#endDrain(drain);
      target.service.servers.delete(target.server.upstream.taskId);
      this.#noteRemoved(target.service, target.server);
      this.#files.persist();
      this.#drains.settle(drain, why === 'timeout' ? 'drain timed out; remaining sessions were shut' : undefined);
    });
  }

  // ---- HAProxy started again -------------------------------------------------------------

  /**
   * The HAProxy of an earlier Fledge runs on: keep it. Only a configuration whose structure
   * (frontend, globals, backends) differs from what it loaded needs a seamless reload; servers
   * and routes are runtime state, repaired by a reconcile against `show servers state` and the
   * maps, without dropping a connection.
   */
  async #afterAdopt(loaded: string | undefined): Promise<void> {
    this.#files.write();
    const written = readIfExists(this.paths.configPath);
    const live = await this.#runtime.backends();
    const missing: string[] = [];
    for (let i = 0; i < this.#state.slots; i++) if (!live.has(slotName(i))) missing.push(slotName(i));
    if (loaded === undefined || configStructure(loaded) !== configStructure(written ?? '') || missing.length > 0) {
      this.#logger.info({ missingBackends: missing }, 'the adopted haproxy runs another configuration: reloading it seamlessly');
      await this.#process?.reload();
      await this.#reapplyServerStates();
      this.#trafficLog.reconnect();
    }
    const repairs = await this.reconcile();
    this.#logger.info({ repairs: repairs.length }, 'adopted haproxy reconciled with the state on disk');
  }

  /** HAProxy came back from a crash with the written configuration: sessions died with it. */
  #afterRestart(): void {
    this.#trafficLog.reconnect();
    void this.#serial(async () => {
      await this.#reapplyServerStates();
      await this.#syncMaps();
    })
      .catch((err: unknown) => this.#logger.warn({ err }, 'could not re-apply server states after an haproxy restart'))
      .finally(() => void this.#pollDrains());
  }
}

/** Runtime API commands are text lines split on blanks and `;`: nothing may smuggle more in. */
function unsafeForRuntimeApi(service: LbService, add: Upstream[]): string | undefined {
  if (/[\s;#]/.test(service.basePath)) return `basePath ${JSON.stringify(service.basePath)} contains a blank, ";" or "#"`;
  // The sticky cookie's Path is written into a log-format string.
  if (service.routing?.sticky?.cookie !== undefined && /["\\$%]/.test(service.basePath))
    return `basePath ${JSON.stringify(service.basePath)} contains a quote, backslash, "$" or "%": no sticky cookie can name it in haproxy`;
  for (const u of add) if (/[\s;#]/.test(u.host)) return `upstream ${u.taskId} has an invalid host ${JSON.stringify(u.host)}`;
  return undefined;
}

function errorMessage(err: unknown): string {
  if (err instanceof HaproxyCommandError) return err.message;
  return err instanceof Error ? err.message : String(err);
}
