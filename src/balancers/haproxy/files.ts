// The files the HAProxy balancer writes: haproxy.cfg, the four maps and state.json, all from
// one HaproxyState, so what is on disk is what is live and a restart (of HAProxy or of Fledge)
// rebuilds it. An operation being applied is written first (write-ahead, `intent`): a Fledge
// killed half-way through leaves a state file that already names the servers it may have
// added and the ones it drains, so the next start repairs towards it instead of deleting them.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { RoutingRules } from '../../core/model.ts';
import type { Logger } from '../../logger.ts';
import type { LbRouting, Upstream } from '../types.ts';
import { upstreamWeight } from '../types.ts';
import { mapEntries, renderConfig, renderMap, serverName, slotName, writeAtomic, type BackendModel, type ConfigModel } from './config.ts';
import { reweighed, type HaproxyState, type ServerEntry, type ServiceEntry } from './state.ts';

export interface HaproxyPaths {
  runtimeSocket: string;
  masterSocket?: string;
  configPath: string;
  exactMap: string;
  prefixMap: string;
  routingMap: string;
  routingServersMap: string;
  stateFile: string;
}

/** Managed: everything under <dataDir>/haproxy (0700); sockets in tmp when that path is too long. */
export function managedPaths(dataDir: string): HaproxyPaths & { masterSocket: string; pidFile: string; logFile: string } {
  const dir = join(dataDir, 'haproxy');
  // unix socket paths are limited to ~107 bytes: a long data dir gets its sockets in tmp
  const sockDir =
    join(dir, 'master.sock').length > 100
      ? join(tmpdir(), `fledge-haproxy-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}`)
      : dir;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  mkdirSync(sockDir, { recursive: true, mode: 0o700 });
  return {
    runtimeSocket: join(sockDir, 'haproxy.sock'),
    masterSocket: join(sockDir, 'master.sock'),
    configPath: join(dir, 'haproxy.cfg'),
    exactMap: join(dir, 'routes-exact.map'),
    prefixMap: join(dir, 'routes-prefix.map'),
    routingMap: join(dir, 'routing.map'),
    routingServersMap: join(dir, 'routing-servers.map'),
    stateFile: join(dir, 'state.json'),
    pidFile: join(dir, 'haproxy.pid'),
    logFile: join(dir, 'haproxy.log'),
  };
}

/** Attached: maps and state next to the configuration the user's HAProxy reads. */
export function attachedPaths(runtimeSocket: string, configPath: string, masterSocket: string | undefined): HaproxyPaths {
  const dir = dirname(configPath);
  return {
    runtimeSocket,
    ...(masterSocket ? { masterSocket } : {}),
    configPath,
    exactMap: join(dir, 'fledge-routes-exact.map'),
    prefixMap: join(dir, 'fledge-routes-prefix.map'),
    routingMap: join(dir, 'fledge-routing.map'),
    routingServersMap: join(dir, 'fledge-routing-servers.map'),
    stateFile: join(dir, 'fledge-haproxy-state.json'),
  };
}

/** state.json: what Fledge restores its state from at start. */
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

/** The operation being applied: its backend, the upstreams it adds, the task ids it drains. */
export interface WriteAhead {
  slot: string;
  add: Upstream[];
  remove: Set<string>;
}

/** Everything of the configuration that is not the state or the paths. */
export type ConfigSettings = Omit<ConfigModel, 'backends' | 'statsSocket' | 'exactMap' | 'prefixMap' | 'routingMap' | 'routingServersMap'>;

export class HaproxyFiles {
  readonly paths: HaproxyPaths;
  /** set while an operation is applied: written to disk before HAProxy is told */
  intent: WriteAhead | undefined;
  readonly #state: HaproxyState;
  readonly #settings: ConfigSettings;
  /** throws when Fledge may not touch HAProxy's files (leadership lost) */
  readonly #guard: (what: string) => void;
  readonly #logger: Logger;

  constructor(paths: HaproxyPaths, state: HaproxyState, settings: ConfigSettings, guard: (what: string) => void, logger: Logger) {
    this.paths = paths;
    this.#state = state;
    this.#settings = settings;
    this.#guard = guard;
    this.#logger = logger;
  }

  /** A service's servers as written to disk: what is live, with the operation being applied. */
  serversOnDisk(entry: ServiceEntry): { upstream: Upstream; name: string; draining: boolean }[] {
    const intent = this.intent?.slot === entry.slot ? this.intent : undefined;
    const out = [...entry.servers.values()].map((s) => ({
      upstream: s.upstream,
      name: s.name,
      draining: s.draining !== undefined || (intent?.remove.has(s.upstream.taskId) ?? false),
    }));
    for (const upstream of intent?.add ?? []) {
      const present = out.find((s) => s.upstream.taskId === upstream.taskId);
      if (present) {
        present.draining = false;
        present.upstream = reweighed(present.upstream, upstream);
      } else out.push({ upstream: { ...upstream }, name: serverName(upstream.taskId), draining: false });
    }
    return out;
  }

  /** Every backend of the configuration, used and spare, with its servers as written. */
  backends(): BackendModel[] {
    const state = this.#state;
    const bySlot = new Map([...state.services.values()].map((e) => [e.slot, e]));
    const out: BackendModel[] = [];
    for (let i = 0; i < Math.max(state.slots, state.usedSlots()); i++) {
      const entry = bySlot.get(slotName(i));
      out.push({
        name: slotName(i),
        ...(entry ? { serviceId: entry.serviceId, basePath: entry.basePath } : {}),
        ...(entry?.rules ? { rules: entry.rules } : {}),
        servers: entry
          ? this.serversOnDisk(entry).map((s) => ({
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

  /** Configuration, maps and state file from the current state: what is on disk is what is live. */
  write(): void {
    this.#guard('write the haproxy configuration');
    const { paths } = this;
    const backends = this.backends();
    const { exact, prefix } = mapEntries(backends);
    writeAtomic(paths.exactMap, renderMap(exact));
    writeAtomic(paths.prefixMap, renderMap(prefix));
    const routing = this.#state.routingEntries();
    writeAtomic(paths.routingMap, renderMap(routing.routing));
    writeAtomic(paths.routingServersMap, renderMap(routing.servers));
    writeAtomic(
      paths.configPath,
      renderConfig({
        ...this.#settings,
        statsSocket: paths.runtimeSocket,
        exactMap: paths.exactMap,
        prefixMap: paths.prefixMap,
        routingMap: paths.routingMap,
        routingServersMap: paths.routingServersMap,
        backends,
      }),
    );
    const state: StateFile = {
      version: 1,
      slots: this.#state.slots,
      services: [...this.#state.services.values()].map((e) => ({
        serviceId: e.serviceId,
        basePath: e.basePath,
        slot: e.slot,
        servers: this.serversOnDisk(e).map((s) => ({ ...s.upstream, name: s.name, draining: s.draining })),
        ...(e.routing ? { routing: e.routing } : {}),
        ...(e.rules ? { rules: e.rules } : {}),
      })),
    };
    writeAtomic(paths.stateFile, `${JSON.stringify(state, null, 2)}\n`);
  }

  /** write(), logging rather than throwing: the state in memory stands, the next write catches up. */
  persist(): void {
    try {
      this.write();
    } catch (err) {
      this.#logger.error({ err }, 'could not write the haproxy configuration');
    }
  }

  /** The state file of an earlier run into the state (draining servers marked wasDraining). */
  load(): void {
    const file = this.paths.stateFile;
    if (!existsSync(file)) return;
    try {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as StateFile;
      this.#state.slots = saved.slots;
      for (const s of saved.services) {
        const servers = new Map<string, ServerEntry>();
        for (const { name, draining, ...upstream } of s.servers) servers.set(upstream.taskId, { upstream, name, wasDraining: draining });
        this.#state.services.set(s.serviceId, {
          serviceId: s.serviceId,
          basePath: s.basePath,
          slot: s.slot,
          servers,
          ...(s.routing ? { routing: s.routing } : {}),
          ...(s.rules ? { rules: s.rules } : {}),
        });
      }
      this.#logger.info({ services: saved.services.length, file }, 'haproxy state restored from disk');
    } catch (err) {
      this.#logger.warn({ err, file }, 'ignoring an unreadable haproxy state file');
    }
  }
}

export function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The configuration without its servers and comments: what only a reload can change. */
export function configStructure(config: string): string {
  return config
    .split('\n')
    .filter((l) => !/^\s*(server |#)/.test(l))
    .join('\n');
}
