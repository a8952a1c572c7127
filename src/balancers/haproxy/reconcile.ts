// The reconcile, decided: Fledge's state against what HAProxy runs (`show servers state`), as
// an ordered list of repairs. No I/O; the balancer runs the steps in order.
//
// Order matters (a repair must never leave a backend with nothing in rotation): servers that
// should serve are put right first (added, re-created at their address, put back into rotation,
// re-weighed); then the ones that should drain are set to drain; servers unknown to Fledge go
// last — out of rotation at once, deleted when idle (HAProxy refuses to delete a server with
// connections, so a busy one is deleted at a later reconcile).
import type { Upstream } from '../types.ts';
import { upstreamWeight } from '../types.ts';
import type { ServerStateRow } from './runtime-api.ts';

/** A server Fledge wants in HAProxy. */
export interface WantedServer {
  backend: string;
  /** HAProxy's server name */
  name: string;
  upstream: Upstream;
  draining: boolean;
}

export type ReconcileStep =
  /** `add server`, then enabled — or, when it should drain, set to drain with the drain steps */
  | { kind: 'add'; key: string; upstream: Upstream; enable: boolean; repair: string }
  /** at another address in HAProxy: deleted (sessions shut) and added again */
  | { kind: 'recreate'; backend: string; name: string; key: string; upstream: Upstream; enable: boolean; repair: string }
  /** serving where it should drain: nothing to do now, it is among the drain steps */
  | { kind: 'note'; repair: string }
  | { kind: 'ready'; key: string; repair: string }
  | { kind: 'weight'; key: string; weight: number; repair: string }
  | { kind: 'drain'; key: string }
  /** unknown to Fledge: maintenance, deleted if idle; the repair depends on which */
  | { kind: 'remove-unknown'; backend: string; name: string; key: string };

/** Fledge's backends are fledge_b<N>; anything else in HAProxy is the user's. */
export function isFledgeBackend(backend: string): boolean {
  return /^fledge_b\d+$/.test(backend);
}

/**
 * Backends that have wanted servers but no row in `show servers state`: an empty backend has no
 * rows, so only asking HAProxy (`backendExists`) tells an empty one from a missing one.
 */
export function backendsToCheck(wanted: readonly WantedServer[], live: readonly ServerStateRow[]): string[] {
  const withRows = new Set(live.map((r) => r.backend));
  const liveKeys = new Set(live.map((r) => `${r.backend}/${r.server}`));
  const out = new Set<string>();
  for (const w of wanted) if (!liveKeys.has(`${w.backend}/${w.name}`) && !withRows.has(w.backend)) out.add(w.backend);
  return [...out];
}

/**
 * The repairs that bring HAProxy to Fledge's state. `missingBackends`: backends HAProxy does not
 * have (their servers cannot be added; a reload brings them).
 */
export function planReconcile(
  wanted: readonly WantedServer[],
  live: readonly ServerStateRow[],
  missingBackends: ReadonlySet<string> = new Set(),
): ReconcileStep[] {
  const rows = new Map(live.map((r) => [`${r.backend}/${r.server}`, r]));
  const wantedKeys = new Set(wanted.map((w) => `${w.backend}/${w.name}`));
  const serve: ReconcileStep[] = [];
  const drains: ReconcileStep[] = [];
  for (const { backend, name, upstream, draining } of wanted) {
    const key = `${backend}/${name}`;
    const row = rows.get(key);
    const { host, port } = upstream;
    if (!row) {
      if (missingBackends.has(backend)) continue;
      serve.push({
        kind: 'add',
        key,
        upstream,
        enable: !draining,
        repair: `re-added server ${key} (${host}:${port}), missing from haproxy`,
      });
      if (draining) drains.push({ kind: 'drain', key });
    } else if (row.host !== host || row.port !== port) {
      serve.push({
        kind: 'recreate',
        backend,
        name,
        key,
        upstream,
        enable: !draining,
        repair: `re-created server ${key}: haproxy had ${row.host}:${row.port}, Fledge ${host}:${port}`,
      });
      if (draining) drains.push({ kind: 'drain', key });
    } else if (draining && !row.drain && !row.maint) {
      serve.push({ kind: 'note', repair: `server ${key} set back to drain` });
      drains.push({ kind: 'drain', key });
    } else if (!draining && (row.maint || row.drain)) {
      serve.push({
        kind: 'ready',
        key,
        repair: `server ${key} put back into rotation (haproxy had it ${row.maint ? 'in maintenance' : 'draining'})`,
      });
    }
    const weight = upstreamWeight(upstream);
    if (row && !draining && row.host === host && row.port === port && row.weight !== weight) {
      serve.push({ kind: 'weight', key, weight, repair: `server ${key} weight set back to ${weight} (haproxy had ${row.weight})` });
    }
  }
  const unknown: ReconcileStep[] = [];
  for (const [key, row] of rows) {
    if (!isFledgeBackend(row.backend) || wantedKeys.has(key)) continue;
    unknown.push({ kind: 'remove-unknown', backend: row.backend, name: row.server, key });
  }
  return [...serve, ...drains, ...unknown];
}

/** A live map (`key value` lines, any order) against the entries Fledge wants in it. */
export function mapDiffers(live: readonly string[], want: readonly [string, string][]): boolean {
  const wanted = want.map(([k, v]) => `${k} ${v}`).sort();
  return JSON.stringify([...live].sort()) !== JSON.stringify(wanted);
}
