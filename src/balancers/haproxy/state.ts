// What the HAProxy balancer means to be live, per service and server: the one state that the
// configuration, maps and state file are written from (files.ts) and that HAProxy is
// reconciled against (reconcile.ts). No I/O here.
import type { RoutingRules } from '../../core/model.ts';
import type { Drain } from '../drains.ts';
import type { LbRouting, Upstream } from '../types.ts';
import { routingMapEntries, slotName } from './config.ts';

export interface ServerEntry {
  upstream: Upstream;
  /** HAProxy's server name (serverName of the task id) */
  name: string;
  draining?: HaproxyDrain;
  /** a draining server written to disk (restored as `disabled`) */
  wasDraining?: boolean;
}

export interface ServiceEntry {
  serviceId: string;
  basePath: string;
  /** the backend this service owns (fledge_b<N>) */
  slot: string;
  /** by task id */
  servers: Map<string, ServerEntry>;
  /** routing as the last operation gave it: on while defined (the routing map names its deploy) */
  routing?: LbRouting;
  /** the rules written into this backend's configuration (kept after routing is cleared) */
  rules?: RoutingRules;
}

/** What a drain takes out of rotation. */
export interface Draining {
  service: ServiceEntry;
  server: ServerEntry;
  /** the server is being deleted: a cancel can no longer put it back */
  finishing: boolean;
}

export type HaproxyDrain = Drain<Draining>;

export class HaproxyState {
  /** by service id */
  readonly services = new Map<string, ServiceEntry>();
  /** backends in the configuration, used and spare */
  slots = 0;

  /** The service routed at this basePath. */
  owner(basePath: string): string | undefined {
    for (const entry of this.services.values()) if (entry.basePath === basePath) return entry.serviceId;
    return undefined;
  }

  /** One past the highest backend a service uses. */
  usedSlots(): number {
    let max = -1;
    for (const entry of this.services.values()) max = Math.max(max, Number(entry.slot.slice('fledge_b'.length)));
    return max + 1;
  }

  /** The lowest backend no service uses (it may be beyond the configured ones). */
  freeSlot(): number {
    const taken = new Set([...this.services.values()].map((e) => e.slot));
    let index = 0;
    while (taken.has(slotName(index))) index += 1;
    return index;
  }

  /** Some backend has routing rules written: the routing maps are in use. */
  routed(): boolean {
    return [...this.services.values()].some((e) => e.rules);
  }

  /** The routing maps' entries: routing on per backend, each version's servers in rotation, each server's deploy. */
  routingEntries(): { routing: [string, string][]; servers: [string, string][] } {
    const routing: [string, string][] = [];
    const servers: [string, string][] = [];
    for (const entry of this.services.values()) {
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

  /** The task a `backend/server` stands for, if live. */
  serverAt(backend: string, name: string): { service: ServiceEntry; server: ServerEntry } | undefined {
    for (const service of this.services.values()) {
      if (service.slot !== backend) continue;
      for (const server of service.servers.values()) if (server.name === name) return { service, server };
    }
    return undefined;
  }
}

/** An upstream added again takes the operation's weight (absent = the default). */
export function reweighed(current: Upstream, added: Upstream): Upstream {
  const { weight: _old, ...rest } = current;
  return { ...rest, ...(added.weight !== undefined ? { weight: added.weight } : {}) };
}

export function deployOf(u: Upstream): { deployId?: string } {
  return u.deployId !== undefined ? { deployId: u.deployId } : {};
}
