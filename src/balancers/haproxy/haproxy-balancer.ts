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
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { silentLogger, type Logger } from '../../logger.ts';
import { normalizeBasePath } from '../base-path.ts';
import { clientLimits, type ClientLimits } from '../limits.ts';
import { OperationBook, statusOf, type Operation } from '../operations.ts';
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
import {
  mapEntries,
  renderConfig,
  renderMap,
  routingMapEntries,
  serverName,
  serverParams,
  slotName,
  writeAtomic,
  type BackendModel,
} from './config.ts';
import { HaproxyProcess } from './process.ts';
import { HaproxyTrafficLog } from './traffic-log.ts';
import {
  HaproxyCommandError,
  HaproxyUnreachableError,
  haproxyCommand,
  haproxyExpect,
  parseServersState,
  parseShowStat,
  type StatRow,
} from './runtime-api.ts';

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
  readonly paths: {
    runtimeSocket: string;
    masterSocket?: string;
    configPath: string;
    exactMap: string;
    prefixMap: string;
    routingMap: string;
    routingServersMap: string;
    stateFile: string;
  };
  /** managed: master and worker pids (tests kill them); attached: [] */
  pids(): Promise<number[]>;
  /** managed: how many times HAProxy was restarted after dying */
  restarts(): number;
  /** managed: the HAProxy running now was left by an earlier Fledge and adopted at start */
  adopted(): boolean;
  /** close(), and stop a managed HAProxy (close() alone leaves it running). Attached: close(). */
  shutdown(): Promise<void>;
}

interface ServerEntry {
  upstream: Upstream;
  name: string;
  draining?: Drain;
  /** a draining server written to disk (restored as `disabled`) */
  wasDraining?: boolean;
}

interface ServiceEntry {
  serviceId: string;
  basePath: string;
  slot: string;
  servers: Map<string, ServerEntry>;
  /** routing as the last operation gave it: on while defined (the routing map names its deploy) */
  routing?: LbRouting;
  /** the rules written into this backend's configuration (kept after routing is cleared) */
  rules?: RoutingRules;
}

interface Drain {
  service: ServiceEntry;
  server: ServerEntry;
  waiters: Set<Operation<OpData>>;
  deadline: number;
  finishing: boolean;
}

interface OpData {
  pending: Set<Drain>;
}

interface StateFile {
  version: 1;
  slots: number;
  services: {
    serviceId: string;
    basePath: string;
    slot: string;
    servers: (Upstream & { name: string; draining: boolean })[];
    routing?: LbRouting;
    rules?: RoutingRules;
  }[];
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
  readonly paths: HaproxyBalancer['paths'];
  readonly #mode: 'managed' | 'attached';
  readonly #host: string;
  readonly #port: number;
  readonly #drainTimeoutMs: number;
  readonly #reconcileIntervalMs: number;
  readonly #spare: number;
  readonly #drainPollMs: number;
  readonly #cmdTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #serverTimeoutMs: number;
  readonly #serverParams: string;
  readonly #observePollMs: number;
  readonly #upstreamListeners = new Set<(event: UpstreamEvent) => void>();
  /** the last status seen per `backend/server` (show stat), for ejection events */
  readonly #serverStatus = new Map<string, string>();
  #observeTimer: NodeJS.Timeout | undefined;
  readonly #limits: ClientLimits;
  readonly #trustForwardedFrom: readonly string[];
  readonly #logger: Logger;
  readonly #ops: OperationBook<OpData>;
  readonly #services = new Map<string, ServiceEntry>();
  readonly #drains = new Set<Drain>();
  /** operations whose changes are being sent to HAProxy */
  readonly #applying = new Set<{ serviceId: string; add: Upstream[]; remove: Upstream[] }>();
  /**
   * The operation being applied, written to disk before HAProxy is told (write-ahead): a
   * Fledge killed half-way through leaves a state file that already names the servers it may
   * have added and drains, so the next start repairs towards it instead of deleting them.
   */
  #intent: { slot: string; add: Upstream[]; remove: Set<string> } | undefined;
  readonly #process: HaproxyProcess | undefined;
  readonly #stopOnClose: boolean;
  readonly #mayAct: () => boolean;
  #slots = 0;
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
    this.#drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    this.#reconcileIntervalMs = options.reconcileIntervalMs ?? 10_000;
    this.#spare = Math.max(1, options.spareBackends ?? 8);
    this.#drainPollMs = options.drainPollMs ?? 100;
    this.#cmdTimeoutMs = options.commandTimeoutMs ?? 5_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
    this.#serverTimeoutMs = options.upstreamTimeoutMs ?? 15_000;
    this.#serverParams = serverParams(options.ejectAfterFailures ?? 3, options.ejectBaseMs ?? 1_000);
    this.#observePollMs = options.observePollMs ?? 500;
    this.#limits = clientLimits(options);
    this.#trustForwardedFrom = options.trustForwardedFrom ?? [];
    this.#logger = options.logger ?? silentLogger;
    this.#ops = new OperationBook(this.#logger, options.maxRememberedOperations);
    this.#stopOnClose = options.stopOnClose ?? false;
    this.#mayAct = options.mayAct ?? (() => true);

    if (this.#mode === 'managed') {
      if (!options.dataDir) throw new Error('the managed haproxy balancer needs a dataDir');
      const dir = join(options.dataDir, 'haproxy');
      // unix socket paths are limited to ~107 bytes: a long data dir gets its sockets in tmp
      const sockDir =
        join(dir, 'master.sock').length > 100
          ? join(tmpdir(), `fledge-haproxy-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}`)
          : dir;
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      mkdirSync(sockDir, { recursive: true, mode: 0o700 });
      this.paths = {
        runtimeSocket: join(sockDir, 'haproxy.sock'),
        masterSocket: join(sockDir, 'master.sock'),
        configPath: join(dir, 'haproxy.cfg'),
        exactMap: join(dir, 'routes-exact.map'),
        prefixMap: join(dir, 'routes-prefix.map'),
        routingMap: join(dir, 'routing.map'),
        routingServersMap: join(dir, 'routing-servers.map'),
        stateFile: join(dir, 'state.json'),
      };
      this.#process = new HaproxyProcess({
        bin: options.bin ?? 'haproxy',
        configPath: this.paths.configPath,
        statsSocket: this.paths.runtimeSocket,
        masterSocket: this.paths.masterSocket as string,
        pidFile: join(dir, 'haproxy.pid'),
        logFile: join(dir, 'haproxy.log'),
        logger: this.#logger,
        writeConfig: () => this.#writeFiles(),
        onRestarted: () => this.#afterRestart(),
      });
    } else {
      if (!options.runtimeSocket || !options.configPath)
        throw new Error('the attached haproxy balancer needs runtimeSocket and configPath');
      const dir = dirname(options.configPath);
      this.paths = {
        runtimeSocket: options.runtimeSocket,
        ...(options.masterSocket ? { masterSocket: options.masterSocket } : {}),
        configPath: options.configPath,
        exactMap: join(dir, 'fledge-routes-exact.map'),
        prefixMap: join(dir, 'fledge-routes-prefix.map'),
        routingMap: join(dir, 'fledge-routing.map'),
        routingServersMap: join(dir, 'fledge-routing-servers.map'),
        stateFile: join(dir, 'fledge-haproxy-state.json'),
      };
      this.#process = undefined;
    }
    this.#traffic = new TrafficRecorder(options.now);
    this.#trafficLog = new HaproxyTrafficLog({
      socketPath: this.paths.runtimeSocket,
      resolve: (backend, server) => this.#resolveServer(backend, server),
      onRecord: (record) => this.#traffic.record(record),
      logger: this.#logger,
      commandTimeoutMs: this.#cmdTimeoutMs,
    });
  }

  async start(): Promise<void> {
    this.#loadState();
    this.#restartDrains();
    // At least one spare backend at start, like at runtime (a full configuration gains a batch).
    // Restarting with spares left changes nothing, so an adopted HAProxy needs no reload.
    if (this.#slots < this.#usedSlots() + 1) this.#slots = this.#usedSlots() + this.#spare;
    let fresh = false;
    if (this.#process) {
      const before = readIfExists(this.paths.configPath);
      if ((await this.#process.start()) === 'adopted') await this.#afterAdopt(before);
      else fresh = true;
    } else {
      // Attached: write what HAProxy should run; reload only when it lacks backends (another
      // scheduler added a batch, or it was started from an older file), then repair servers and
      // maps to match the state, without a reload.
      this.#writeFiles();
      await haproxyCommand(this.paths.runtimeSocket, 'show info', this.#cmdTimeoutMs);
      const live = new Set(
        (await haproxyCommand(this.paths.runtimeSocket, 'show backend', this.#cmdTimeoutMs)).split('\n').map((l) => l.trim()),
      );
      const missing = Array.from({ length: this.#slots }, (_, i) => slotName(i)).filter((b) => !live.has(b));
      if (missing.length > 0 && this.paths.masterSocket) {
        this.#logger.info({ missingBackends: missing }, 'the attached haproxy lacks backends: reloading it seamlessly');
        await this.#attachedReload();
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
    const invalid = invalidOperation(service, add, remove, (basePath) => this.#owner(basePath)) ?? unsafeForRuntimeApi(service, add);
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
        this.#intent = { slot: entry.slot, add, remove: new Set(remove.map((u) => u.taskId)) };
        this.#writeFiles();
        for (const upstream of add) await this.#addServer(entry, upstream);
        for (const upstream of remove) {
          const server = entry.servers.get(upstream.taskId);
          if (!server) continue;
          const drain = server.draining ?? (await this.#startDrain(entry, server));
          drain.waiters.add(op);
          op.data.pending.add(drain);
        }
        await this.#applyRouting(entry, service.routing);
        this.#logger.info(
          { operationId, serviceId: service.serviceId, add: add.map((u) => u.taskId), remove: remove.map((u) => u.taskId) },
          'LB operation applied',
        );
      } catch (err) {
        this.#logger.warn({ err, operationId, serviceId: service.serviceId }, 'LB operation failed in haproxy');
        for (const drain of op.data.pending) drain.waiters.delete(op);
        op.data.pending.clear();
        this.#ops.finish(op, 'FAILED', errorMessage(err));
      } finally {
        this.#intent = undefined;
        this.#persist();
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
        for (const drain of op.data.pending) {
          drain.waiters.delete(op);
          if (drain.waiters.size === 0 && !drain.finishing) {
            this.#endDrain(drain);
            try {
              await this.#cmd(`set server ${drain.service.slot}/${drain.server.name} state ready`);
            } catch (err) {
              // the reconcile puts it back; the cancel itself stands
              this.#logger.warn({ err, operationId }, 'could not put a draining server back into rotation');
            }
          }
        }
        op.data.pending.clear();
        // Servers back in rotation are routed to again.
        await this.#syncRoutingMaps().catch((err: unknown) =>
          this.#logger.warn({ err, operationId }, 'could not rewrite the routing maps'),
        );
        this.#persist();
        this.#ops.finish(op, 'CANCELED', 'canceled; upstreams still draining were put back into rotation');
        this.#logger.info({ operationId }, 'LB operation canceled');
      }),
    );
  }

  async upstreams(serviceId: string): Promise<Upstream[]> {
    const entry = this.#services.get(serviceId);
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
    if (this.#observeTimer || this.#closed || !this.#serverParams || this.#upstreamListeners.size === 0) return;
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
    if (this.#services.size === 0) return;
    const rows = parseShowStat(await this.#cmd('show stat', [/^# pxname/]));
    const byKey = new Map<string, { serviceId: string; server: ServerEntry }>();
    for (const entry of this.#services.values()) {
      for (const server of entry.servers.values()) byKey.set(`${entry.slot}/${server.name}`, { serviceId: entry.serviceId, server });
    }
    const seen = new Set<string>();
    for (const row of rows) {
      const key = `${row.backend}/${row.server}`;
      const known = byKey.get(key);
      if (!known) continue;
      seen.add(key);
      const before = this.#serverStatus.get(key);
      this.#serverStatus.set(key, row.status);
      if (known.server.draining || before === row.status) continue;
      const down = row.status.startsWith('DOWN');
      const up = row.status.startsWith('UP');
      if (down && !before?.startsWith('DOWN')) {
        this.#emitUpstream({
          kind: 'EJECTED',
          serviceId: known.serviceId,
          taskId: known.server.upstream.taskId,
          failures: 0,
          reason: row.checkStatus ? `haproxy marked it down (${row.checkStatus})` : 'haproxy marked it down',
        });
      } else if (up && before?.startsWith('DOWN')) {
        this.#emitUpstream({
          kind: 'RESTORED',
          serviceId: known.serviceId,
          taskId: known.server.upstream.taskId,
          failures: 0,
          reason: 'connect check passed',
        });
      }
    }
    for (const key of [...this.#serverStatus.keys()]) if (!seen.has(key)) this.#serverStatus.delete(key);
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
    for (const [serviceId, entry] of this.#services) {
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
    for (const entry of this.#services.values()) {
      if (entry.slot !== backend) continue;
      for (const s of entry.servers.values()) {
        if (s.name === server) return { serviceId: entry.serviceId, taskId: s.upstream.taskId, ...deployOf(s.upstream) };
      }
    }
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
      const repairs: string[] = [];
      const rows = parseServersState(await this.#cmd('show servers state', [/^\d+\n# be_id/, /^\d+$/, /^# be_id/]));
      const live = new Map(rows.map((r) => [`${r.backend}/${r.server}`, r]));
      const wanted = new Map<string, { entry: ServiceEntry; server: ServerEntry }>();
      for (const entry of this.#services.values()) {
        for (const server of entry.servers.values()) wanted.set(`${entry.slot}/${server.name}`, { entry, server });
      }
      const ours = (backend: string) => /^fledge_b\d+$/.test(backend);
      // Servers that should serve are put right first, then the ones that should drain, and
      // unknown ones are removed last: a repair never leaves a backend with nothing in rotation.
      const drains: string[] = [];
      for (const [key, { entry, server }] of wanted) {
        const row = live.get(key);
        const { host, port } = server.upstream;
        if (!row) {
          if (!this.#slotExists(rows, entry.slot) && !(await this.#backendExists(entry.slot))) continue;
          await this.#cmd(`add server ${key} ${this.#serverAddress(server.upstream)}`, [/^New server registered/]);
          if (server.draining) drains.push(key);
          else await this.#enable(key);
          repairs.push(`re-added server ${key} (${host}:${port}), missing from haproxy`);
        } else if (row.host !== host || row.port !== port) {
          await this.#deleteServer(entry.slot, server.name, true);
          await this.#cmd(`add server ${key} ${this.#serverAddress(server.upstream)}`, [/^New server registered/]);
          if (server.draining) drains.push(key);
          else await this.#enable(key);
          repairs.push(`re-created server ${key}: haproxy had ${row.host}:${row.port}, Fledge ${host}:${port}`);
        } else if (server.draining && !row.drain && !row.maint) {
          drains.push(key);
          repairs.push(`server ${key} set back to drain`);
        } else if (!server.draining && (row.maint || row.drain)) {
          await this.#cmd(`set server ${key} state ready`);
          repairs.push(`server ${key} put back into rotation (haproxy had it ${row.maint ? 'in maintenance' : 'draining'})`);
        }
        if (row && !server.draining && row.host === host && row.port === port && row.weight !== upstreamWeight(server.upstream)) {
          await this.#cmd(`set server ${key} weight ${upstreamWeight(server.upstream)}`);
          repairs.push(`server ${key} weight set back to ${upstreamWeight(server.upstream)} (haproxy had ${row.weight})`);
        }
      }
      for (const key of drains) await this.#cmd(`set server ${key} state drain`);
      for (const [key, row] of live) {
        if (!ours(row.backend) || wanted.has(key)) continue;
        // No new requests at once; requests in flight on it finish, and it is deleted when idle
        // (HAProxy refuses to delete a server with connections) — here or at a later reconcile.
        if (await this.#deleteIdleServer(row.backend, row.server)) repairs.push(`deleted server ${key}, unknown to Fledge`);
        else repairs.push(`server ${key}, unknown to Fledge, out of rotation; deleted once its requests finish`);
      }
      if (await this.#mapsDrifted()) {
        await this.#syncMaps();
        repairs.push('route maps rewritten to match Fledge');
      }
      for (const repair of repairs) this.#logger.warn({ repair }, 'haproxy drift repaired');
      if (repairs.length > 0) this.#persist();
      return repairs;
    });
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

  /** A runtime API command; waits for a restarting HAProxy (managed) and retries once. */
  async #cmd(command: string, ok: RegExp[] = []): Promise<string> {
    if (!command.startsWith('show ')) this.#assertMayAct(`send "${command}" to haproxy`);
    try {
      return await haproxyExpect(this.paths.runtimeSocket, command, ok, this.#cmdTimeoutMs);
    } catch (err) {
      if (!(err instanceof HaproxyUnreachableError) || !this.#process || this.#closed) throw err;
      await this.#process.whenReady(15_000);
      return haproxyExpect(this.paths.runtimeSocket, command, ok, this.#cmdTimeoutMs);
    }
  }

  #owner(basePath: string): string | undefined {
    for (const entry of this.#services.values()) if (entry.basePath === basePath) return entry.serviceId;
    return undefined;
  }

  #usedSlots(): number {
    let max = -1;
    for (const entry of this.#services.values()) max = Math.max(max, Number(entry.slot.slice('fledge_b'.length)));
    return max + 1;
  }

  async #serviceEntry(service: LbService): Promise<ServiceEntry> {
    const basePath = normalizeBasePath(service.basePath);
    const existing = this.#services.get(service.serviceId);
    if (existing) {
      if (existing.basePath !== basePath) {
        existing.basePath = basePath;
        await this.#syncMaps();
      }
      return existing;
    }
    const taken = new Set([...this.#services.values()].map((e) => e.slot));
    let index = 0;
    while (taken.has(slotName(index))) index += 1;
    if (index >= this.#slots) {
      // No spare backend left: the configuration gains a new batch and HAProxy reloads.
      await this.#growSlots(index + this.#spare);
    }
    const entry: ServiceEntry = { serviceId: service.serviceId, basePath, slot: slotName(index), servers: new Map() };
    this.#services.set(service.serviceId, entry);
    try {
      await this.#syncMaps();
    } catch (err) {
      this.#services.delete(service.serviceId);
      throw err;
    }
    this.#logger.info({ serviceId: service.serviceId, basePath, backend: entry.slot }, 'haproxy backend assigned to service');
    return entry;
  }

  async #growSlots(slots: number): Promise<void> {
    const before = this.#slots;
    this.#slots = slots;
    try {
      this.#writeFiles();
      if (this.#process) await this.#process.reload();
      else if (this.paths.masterSocket) await this.#attachedReload();
      else throw new Error('a new service needs a new haproxy backend, which needs a reload: give the attached balancer a masterSocket');
      this.#trafficLog.reconnect();
    } catch (err) {
      this.#slots = before;
      this.#writeFiles();
      throw err;
    }
    // A reloaded worker starts from the configuration: put draining servers back to drain.
    await this.#reapplyServerStates();
  }

  async #attachedReload(): Promise<void> {
    this.#assertMayAct('reload haproxy');
    const answer = await haproxyCommand(this.paths.masterSocket as string, 'reload', this.#cmdTimeoutMs).catch(() => '');
    if (/error|fail/i.test(answer)) throw new Error(`haproxy reload failed: ${answer.trim()}`);
    const deadline = Date.now() + 10_000;
    for (;;) {
      await new Promise((r) => setTimeout(r, 50));
      if (await this.#backendExists(slotName(this.#slots - 1))) return;
      if (Date.now() > deadline) throw new Error('haproxy did not load the configuration with the new backends');
    }
  }

  /** The pid of the worker answering on the stats socket (undefined while none answers). */
  async #workerPid(): Promise<number | undefined> {
    const info = await haproxyCommand(this.paths.runtimeSocket, 'show info', this.#cmdTimeoutMs).catch(() => '');
    const pid = /^Pid: (\d+)/m.exec(info)?.[1];
    return pid === undefined ? undefined : Number(pid);
  }

  async #backendExists(backend: string): Promise<boolean> {
    const answer = await haproxyCommand(this.paths.runtimeSocket, `show servers state ${backend}`, this.#cmdTimeoutMs).catch(() => '');
    return /# be_id/.test(answer);
  }

  #slotExists(rows: { backend: string }[], slot: string): boolean {
    return rows.some((r) => r.backend === slot);
  }

  async #reapplyServerStates(): Promise<void> {
    for (const entry of this.#services.values()) {
      for (const server of entry.servers.values()) {
        if (server.draining) await this.#cmd(`set server ${entry.slot}/${server.name} state drain`).catch(() => undefined);
      }
    }
  }

  async #addServer(entry: ServiceEntry, upstream: Upstream): Promise<void> {
    const existing = entry.servers.get(upstream.taskId);
    if (existing?.draining) {
      // Added back while draining: the newer operation wins; the waiting removals are done.
      await this.#cmd(`set server ${entry.slot}/${existing.name} state ready`);
      const drain = existing.draining;
      this.#endDrain(drain);
      for (const op of drain.waiters) {
        op.data.pending.delete(drain);
        if (op.data.pending.size === 0) this.#ops.finish(op, 'SUCCESS', 'upstream was added back by a later operation');
      }
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
      await this.#cmd(`add server ${key} ${this.#serverAddress(upstream)}`, [/^New server registered/]);
    } catch (err) {
      // Present in HAProxy already (a restart restored it): take it as it is, enabled below.
      if (!(err instanceof HaproxyCommandError && /Already exists/i.test(err.answer))) throw err;
      await this.#cmd(`set server ${key} weight ${upstreamWeight(upstream)}`);
    }
    entry.servers.set(upstream.taskId, { upstream: { ...upstream }, name });
    await this.#enable(key);
  }

  /** Added again: the server takes the operation's weight (absent = the default) at once. */
  async #reweigh(entry: ServiceEntry, server: ServerEntry, upstream: Upstream): Promise<void> {
    const weight = upstreamWeight(upstream);
    const { weight: _old, ...rest } = server.upstream;
    const next = { ...rest, ...(upstream.weight !== undefined ? { weight: upstream.weight } : {}) };
    if (upstreamWeight(server.upstream) !== weight) await this.#cmd(`set server ${entry.slot}/${server.name} weight ${weight}`);
    server.upstream = next;
  }

  /** `host:port` and the passive-protection parameters every server carries. */
  #serverAddress(upstream: Upstream): string {
    return `${upstream.host}:${upstream.port} weight ${upstreamWeight(upstream)}${this.#serverParams ? ` ${this.#serverParams}` : ''}`;
  }

  /** Into rotation; with its connect check on (a dynamic server's checks start disabled). */
  async #enable(key: string): Promise<void> {
    await this.#cmd(`enable server ${key}`);
    if (this.#serverParams) await this.#cmd(`enable health ${key}`);
  }

  async #startDrain(entry: ServiceEntry, server: ServerEntry): Promise<Drain> {
    await this.#cmd(`set server ${entry.slot}/${server.name} state drain`);
    const drain: Drain = { service: entry, server, waiters: new Set(), deadline: Date.now() + this.#drainTimeoutMs, finishing: false };
    server.draining = drain;
    this.#drains.add(drain);
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
          this.#persist();
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
    this.#writeFiles();
    if (this.#process) await this.#process.reload();
    else if (this.paths.masterSocket) {
      // The rules are live once a new worker answers on the stats socket (maps go to it next).
      const before = await this.#workerPid();
      await this.#attachedReload();
      const deadline = Date.now() + 10_000;
      for (let pid = await this.#workerPid(); pid === undefined || pid === before; pid = await this.#workerPid()) {
        if (Date.now() > deadline) throw new Error('haproxy did not start a worker with the new routing rules');
        await new Promise((r) => setTimeout(r, 50));
      }
    } else throw new Error('new routing rules need an haproxy reload: give the attached balancer a masterSocket');
    this.#trafficLog.reconnect();
    await this.#reapplyServerStates();
  }

  /** Drains recorded in the state file (a restart): keep waiting for them, nobody waits on them. */
  #restartDrains(): void {
    for (const entry of this.#services.values()) {
      for (const server of entry.servers.values()) {
        if (!server.wasDraining || server.draining) continue;
        const drain: Drain = { service: entry, server, waiters: new Set(), deadline: Date.now() + this.#drainTimeoutMs, finishing: false };
        server.draining = drain;
        this.#drains.add(drain);
      }
    }
  }

  #endDrain(drain: Drain): void {
    this.#drains.delete(drain);
    if (drain.server.draining === drain) drain.server.draining = undefined;
    drain.server.wasDraining = false;
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
    const rows = parseShowStat(await this.#cmd('show stat', [/^# pxname/]));
    this.#lastStats = new Map(rows.map((r) => [`${r.backend}/${r.server}`, r]));
    count(rows);
    const masterSocket = this.paths.masterSocket;
    if (masterSocket) {
      const old = this.#process ? await this.#process.oldWorkers() : [];
      for (const pid of old) {
        const answer = await haproxyCommand(masterSocket, `@!${pid} show stat`, 1_000).catch(() => '');
        if (answer.includes('# pxname')) count(parseShowStat(answer));
      }
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
      for (const drain of [...this.#drains]) {
        const key = `${drain.service.slot}/${drain.server.name}`;
        const left = sessions.get(key) ?? 0;
        if (left === 0) await this.#finishDrain(drain, 'drained');
        else if (now >= drain.deadline) await this.#finishDrain(drain, 'timeout', left);
      }
    } finally {
      this.#polling = false;
    }
  }

  /** The server is gone: no session left, or the drain timeout shut the rest. */
  async #finishDrain(drain: Drain, why: 'drained' | 'timeout', left = 0): Promise<void> {
    await this.#serial(async () => {
      if (drain.server.draining !== drain || drain.finishing) return;
      drain.finishing = true;
      try {
        if (why === 'timeout') {
          this.#logger.warn(
            { serviceId: drain.service.serviceId, taskId: drain.server.upstream.taskId, cut: left },
            'drain timed out: shutting sessions',
          );
        }
        await this.#deleteServer(drain.service.slot, drain.server.name, why === 'timeout');
      } catch (err) {
        // Sessions arrived between the poll and the delete, or HAProxy is restarting: next poll.
        drain.finishing = false;
        this.#logger.debug({ err }, 'draining server not deleted yet');
        return;
      }
      this.#endDrain(drain);
      drain.service.servers.delete(drain.server.upstream.taskId);
      this.#noteRemoved(drain.service, drain.server);
      this.#persist();
      for (const op of drain.waiters) {
        op.data.pending.delete(drain);
        if (op.data.pending.size === 0)
          this.#ops.finish(op, 'SUCCESS', why === 'timeout' ? 'drain timed out; remaining sessions were shut' : undefined);
      }
    });
  }

  /** maint, (shutdown sessions), del server. A server HAProxy does not have is deleted already. */
  /** Into maintenance and deleted if it has no connections left; false when they keep it. */
  async #deleteIdleServer(backend: string, name: string): Promise<boolean> {
    const key = `${backend}/${name}`;
    await this.#cmd(`set server ${key} state maint`);
    try {
      await this.#cmd(`del server ${key}`, [/^Server deleted/]);
      return true;
    } catch (err) {
      if (err instanceof HaproxyCommandError && /No such server|No such backend/i.test(err.answer)) return true;
      if (err instanceof HaproxyCommandError) return false;
      throw err;
    }
  }

  async #deleteServer(backend: string, name: string, force: boolean): Promise<void> {
    const key = `${backend}/${name}`;
    const gone = (err: unknown) => err instanceof HaproxyCommandError && /No such server|No such backend/i.test(err.answer);
    try {
      await this.#cmd(`set server ${key} state maint`);
      if (force) await this.#cmd(`shutdown sessions server ${key}`);
      await this.#cmd(`del server ${key}`, [/^Server deleted/]);
    } catch (err) {
      if (gone(err)) return;
      if (!force && err instanceof HaproxyCommandError) throw err;
      if (err instanceof HaproxyCommandError) {
        // force: shut what is left and try once more
        await this.#cmd(`shutdown sessions server ${key}`).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 20));
        await this.#cmd(`del server ${key}`, [/^Server deleted/]).catch((e: unknown) => {
          if (!gone(e)) throw e;
        });
        return;
      }
      throw err;
    }
  }

  /** Both route maps, atomically (a new version filled, then committed) and on disk. */
  async #syncMaps(): Promise<void> {
    const { exact, prefix } = mapEntries(this.#backends());
    await this.#commitMaps([
      [this.paths.exactMap, exact],
      [this.paths.prefixMap, prefix],
    ]);
    await this.#syncRoutingMaps();
  }

  /** The routing maps (routing on, each version's servers in rotation, each server's deploy). */
  async #syncRoutingMaps(): Promise<void> {
    if (![...this.#services.values()].some((e) => e.rules)) return;
    const { routing, servers } = this.#routingEntries();
    await this.#commitMaps([
      [this.paths.routingMap, routing],
      [this.paths.routingServersMap, servers],
    ]);
  }

  #routingEntries(): { routing: [string, string][]; servers: [string, string][] } {
    const routing: [string, string][] = [];
    const servers: [string, string][] = [];
    for (const entry of this.#services.values()) {
      if (!entry.routing) continue;
      const inRotation = [...entry.servers.values()].filter((s) => !s.draining);
      routing.push(
        ...routingMapEntries(
          entry.slot,
          entry.routing.deployId,
          inRotation.map((s) => ({ name: s.name, ...deployOf(s.upstream) })),
        ),
      );
      for (const s of entry.servers.values()) if (s.upstream.deployId !== undefined) servers.push([s.name, s.upstream.deployId]);
    }
    return { routing, servers };
  }

  async #commitMaps(maps: (readonly [string, [string, string][]])[]): Promise<void> {
    for (const [file, entries] of maps) {
      writeAtomic(file, renderMap(entries));
      const answer = await this.#cmd(`prepare map ${file}`, [/^New version created: \d+/]);
      const version = /(\d+)/.exec(answer)?.[1];
      for (const [key, value] of entries) await this.#cmd(`add map @${version} ${file} ${key} ${value}`);
      await this.#cmd(`commit map @${version} ${file}`);
    }
  }

  async #mapsDrifted(): Promise<boolean> {
    const { exact, prefix } = mapEntries(this.#backends());
    const { routing, servers } = this.#routingEntries();
    const routed = [...this.#services.values()].some((e) => e.rules);
    for (const [file, entries] of [
      [this.paths.exactMap, exact],
      [this.paths.prefixMap, prefix],
      ...(routed
        ? ([
            [this.paths.routingMap, routing],
            [this.paths.routingServersMap, servers],
          ] as const)
        : []),
    ] as const) {
      const answer = await this.#cmd(`show map ${file}`, [/^0x/]);
      const live = answer
        .split('\n')
        .filter((l) => l.startsWith('0x'))
        .map((l) => l.split(' ').slice(1).join(' '))
        .sort();
      const want = entries.map(([k, v]) => `${k} ${v}`).sort();
      if (JSON.stringify(live) !== JSON.stringify(want)) return true;
    }
    return false;
  }

  #backends(): BackendModel[] {
    const bySlot = new Map([...this.#services.values()].map((e) => [e.slot, e]));
    const out: BackendModel[] = [];
    for (let i = 0; i < Math.max(this.#slots, this.#usedSlots()); i++) {
      const entry = bySlot.get(slotName(i));
      out.push({
        name: slotName(i),
        ...(entry ? { serviceId: entry.serviceId, basePath: entry.basePath } : {}),
        ...(entry?.rules ? { rules: entry.rules } : {}),
        servers: entry
          ? this.#serversOnDisk(entry).map((s) => ({
              name: s.name,
              host: s.upstream.host,
              port: s.upstream.port,
              weight: upstreamWeight(s.upstream),
              draining: s.draining,
            }))
          : [],
      });
    }
    return out;
  }

  /** A service's servers as written to disk: what is live, with the operation being applied. */
  #serversOnDisk(entry: ServiceEntry): { upstream: Upstream; name: string; draining: boolean }[] {
    const intent = this.#intent?.slot === entry.slot ? this.#intent : undefined;
    const out = [...entry.servers.values()].map((s) => ({
      upstream: s.upstream,
      name: s.name,
      draining: s.draining !== undefined || (intent?.remove.has(s.upstream.taskId) ?? false),
    }));
    for (const upstream of intent?.add ?? []) {
      const present = out.find((s) => s.upstream.taskId === upstream.taskId);
      if (present) {
        present.draining = false;
        // added again: it takes the operation's weight (absent = the default)
        const { weight: _old, ...rest } = present.upstream;
        present.upstream = { ...rest, ...(upstream.weight !== undefined ? { weight: upstream.weight } : {}) };
      } else out.push({ upstream: { ...upstream }, name: serverName(upstream.taskId), draining: false });
    }
    return out;
  }

  /** Configuration, maps and state file from the current state: what is on disk is what is live. */
  #writeFiles(): void {
    this.#assertMayAct('write the haproxy configuration');
    const backends = this.#backends();
    const { exact, prefix } = mapEntries(backends);
    writeAtomic(this.paths.exactMap, renderMap(exact));
    writeAtomic(this.paths.prefixMap, renderMap(prefix));
    const routing = this.#routingEntries();
    writeAtomic(this.paths.routingMap, renderMap(routing.routing));
    writeAtomic(this.paths.routingServersMap, renderMap(routing.servers));
    writeAtomic(
      this.paths.configPath,
      renderConfig({
        masterWorker: this.#mode === 'managed',
        bindHost: this.#host,
        bindPort: this.#port,
        statsSocket: this.paths.runtimeSocket,
        exactMap: this.paths.exactMap,
        prefixMap: this.paths.prefixMap,
        routingMap: this.paths.routingMap,
        routingServersMap: this.paths.routingServersMap,
        hardStopAfterMs: this.#drainTimeoutMs + 10_000,
        connectTimeoutMs: this.#connectTimeoutMs,
        serverTimeoutMs: this.#serverTimeoutMs,
        serverParams: this.#serverParams,
        limits: this.#limits,
        trustForwardedFrom: this.#trustForwardedFrom,
        backends,
      }),
    );
    const state: StateFile = {
      version: 1,
      slots: this.#slots,
      services: [...this.#services.values()].map((e) => ({
        serviceId: e.serviceId,
        basePath: e.basePath,
        slot: e.slot,
        servers: this.#serversOnDisk(e).map((s) => ({ ...s.upstream, name: s.name, draining: s.draining })),
        ...(e.routing ? { routing: e.routing } : {}),
        ...(e.rules ? { rules: e.rules } : {}),
      })),
    };
    writeAtomic(this.paths.stateFile, `${JSON.stringify(state, null, 2)}\n`);
  }

  #persist(): void {
    try {
      this.#writeFiles();
    } catch (err) {
      this.#logger.error({ err }, 'could not write the haproxy configuration');
    }
  }

  #loadState(): void {
    if (!existsSync(this.paths.stateFile)) return;
    try {
      const state = JSON.parse(readFileSync(this.paths.stateFile, 'utf8')) as StateFile;
      this.#slots = state.slots;
      for (const s of state.services) {
        const servers = new Map<string, ServerEntry>();
        for (const { name, draining, ...upstream } of s.servers) servers.set(upstream.taskId, { upstream, name, wasDraining: draining });
        this.#services.set(s.serviceId, {
          serviceId: s.serviceId,
          basePath: s.basePath,
          slot: s.slot,
          servers,
          ...(s.routing ? { routing: s.routing } : {}),
          ...(s.rules ? { rules: s.rules } : {}),
        });
      }
      this.#logger.info({ services: state.services.length, file: this.paths.stateFile }, 'haproxy state restored from disk');
    } catch (err) {
      this.#logger.warn({ err, file: this.paths.stateFile }, 'ignoring an unreadable haproxy state file');
    }
  }

  /**
   * The HAProxy of an earlier Fledge runs on: keep it. Only a configuration whose structure
   * (frontend, globals, backends) differs from what it loaded needs a seamless reload; servers
   * and routes are runtime state, repaired by a reconcile against `show servers state` and the
   * maps, without dropping a connection.
   */
  async #afterAdopt(loaded: string | undefined): Promise<void> {
    this.#writeFiles();
    const written = readIfExists(this.paths.configPath);
    const missing: string[] = [];
    const answer = await haproxyCommand(this.paths.runtimeSocket, 'show backend', this.#cmdTimeoutMs);
    const live = new Set(answer.split('\n').map((l) => l.trim()));
    for (let i = 0; i < this.#slots; i++) if (!live.has(slotName(i))) missing.push(slotName(i));
    if (loaded === undefined || structure(loaded) !== structure(written ?? '') || missing.length > 0) {
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

function deployOf(u: Upstream): { deployId?: string } {
  return u.deployId !== undefined ? { deployId: u.deployId } : {};
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

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The configuration without its servers and comments: what only a reload can change. */
function structure(config: string): string {
  return config
    .split('\n')
    .filter((l) => !/^\s*(server |#)/.test(l))
    .join('\n');
}

function errorMessage(err: unknown): string {
  if (err instanceof HaproxyCommandError) return err.message;
  return err instanceof Error ? err.message : String(err);
}
