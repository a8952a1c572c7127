// The hosts of a server, built from its config: `local` (the process runtime) and one Docker
// runtime per --docker-host, behind one registry and the composite runtime the engine uses.
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../logger.ts';
import { DockerClient, parseEndpoint, type DockerTls } from '../runtimes/docker/client.ts';
import type { Capacity, PortRange } from '../runtimes/ledger.ts';
import path from 'node:path';
import type { ArtifactLimits } from '../config/index.ts';
import { ArtifactFetcher } from '../runtimes/artifacts/index.ts';
import { createRuntime } from '../runtimes/index.ts';
import type { Store } from '../store/types.ts';
import { HostRuntime } from './host-runtime.ts';
import { HostRegistry, type HostEntry } from './registry.ts';
import { LOCAL_HOST, type HostDefinition } from './types.ts';

export interface HostsConfig {
  dataDir: string;
  /** the local host: task ports and capacity */
  portRange: PortRange;
  capacity: Capacity;
  dockerHosts: HostDefinition[];
  dockerTls?: DockerTls;
  hostUnreachableSeconds: number;
  /** the local host's runtime: processes (default), or the fake (--runtime fake) */
  runtime?: 'process' | 'fake';
  /** the artifact fetcher's bounds (defaults: ARTIFACT_DEFAULTS) */
  artifacts?: ArtifactLimits;
}

/** The artifact bounds of `fledge serve`'s defaults (options.ts), for callers that set none. */
const ARTIFACT_DEFAULTS: ArtifactLimits = { maxBytes: 2048 << 20, timeoutMs: 300_000, retries: 3, cacheMaxBytes: 10_240 * (1 << 20) };

export interface HostsDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  installationId: string;
  /** other schedulers' data dirs on this machine, where the process runtime also finds tasks */
  peerDataDirs?: () => Promise<string[]>;
  /** whether this server leads (several schedulers on one store) */
  leading?: () => boolean;
}

export interface Hosts {
  registry: HostRegistry;
  runtime: HostRuntime;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export function createHosts(config: HostsConfig, deps: HostsDeps): Hosts {
  const local: HostDefinition = {
    id: LOCAL_HOST,
    kind: 'process',
    address: '127.0.0.1',
    portRange: config.portRange,
    capacity: config.capacity,
    attributes: {},
  };
  // One fetcher for every host: one cache, and tasks fetching one URL together download it once.
  const artifacts = new ArtifactFetcher({
    dir: path.join(config.dataDir, 'artifacts'),
    ...(config.artifacts ?? ARTIFACT_DEFAULTS),
    logger: deps.logger,
  });
  const entries: HostEntry[] = [
    {
      definition: local,
      runtime:
        config.runtime === 'fake'
          ? createRuntime({ kind: 'fake', portRange: config.portRange, capacity: config.capacity, now: () => deps.clock.now() })
          : createRuntime({
              kind: 'process',
              artifacts,
              dataDir: config.dataDir,
              portRange: config.portRange,
              capacity: config.capacity,
              logger: deps.logger,
              ...(deps.peerDataDirs ? { peerDataDirs: deps.peerDataDirs } : {}),
            }),
    },
  ];
  for (const def of config.dockerHosts) {
    const endpoint = parseEndpoint(def.endpoint ?? '', config.dockerTls);
    if (endpoint.kind === 'tcp' && !endpoint.tls) {
      deps.logger.warn(
        { host: def.id, endpoint: def.endpoint },
        `Docker host ${def.id} is reached over plain tcp: anyone who can reach that port controls its Docker; use --docker-tls-*`,
      );
    }
    const client = new DockerClient(endpoint);
    entries.push({
      definition: def,
      runtime: createRuntime({
        kind: 'docker',
        artifacts,
        hostId: def.id,
        client,
        address: def.address,
        dataDir: config.dataDir,
        installationId: deps.installationId,
        portRange: def.portRange,
        capacity: def.capacity,
        // This very machine: a port something else binds is skipped, as for processes.
        probePorts: endpoint.kind === 'unix' || LOOPBACK.has(endpoint.host),
        logger: deps.logger,
      }),
      ping: (timeoutMs) => client.ping(timeoutMs),
    });
  }
  const registry = new HostRegistry(entries, {
    store: deps.store,
    clock: deps.clock,
    logger: deps.logger,
    unreachableMs: config.hostUnreachableSeconds * 1000,
    ...(deps.leading ? { leading: deps.leading } : {}),
  });
  return { registry, runtime: new HostRuntime(registry) };
}

export { HostRegistry, type HostEntry, type HostStatus, type HostedRuntime } from './registry.ts';
export { HostRuntime } from './host-runtime.ts';
export { ADMIN_STATES, LOCAL_HOST, type AdminState, type HostAction, type HostDefinition, type HostState } from './types.ts';
