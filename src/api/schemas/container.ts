// Singularity's containerInfo (SingularityContainerInfo, SingularityDockerInfo,
// SingularityDockerPortMapping, SingularityVolume): the exact shapes (`parameters` as a map beside
// `dockerParameters`), and the rules that need the rest of the deploy (FROM_OFFER indexes
// against resources.numPorts, memory, shell). Normalised into core/container.ts's shapes.
import { z } from 'zod';
import {
  CONTAINER_TYPES,
  DOCKER_NETWORKS,
  PORT_MAPPING_TYPES,
  type ContainerInfo,
  type ContainerVolume,
  type DockerParameter,
  type DockerPortMapping,
} from '../../core/container.ts';
import { MIN_MEMORY_MB, normaliseParameterKey, parameterIssue } from '../../runtimes/docker/container-config.ts';
import { boundedJson, boundedRecord, LIMITS, list, nullsAsAbsent, text } from './common.ts';

// Singularity's UI sends booleans and port numbers as text: jackson.ts reads them (with a warning).
const boolish = z.boolean();
const intish = z.int().min(0).max(65535);
const absolutePath = z
  .string()
  .regex(/^\//, { error: 'must be an absolute path' })
  .max(4096)
  .refine((p) => !p.includes(':') && !p.includes('\0'), { error: 'must not contain ":"' });

const portMappingSchema = nullsAsAbsent(
  z.strictObject({
    containerPortType: z.enum(PORT_MAPPING_TYPES).default('LITERAL'),
    containerPort: intish,
    hostPortType: z.enum(PORT_MAPPING_TYPES).default('LITERAL'),
    hostPort: intish,
    protocol: z
      .string()
      .max(10)
      .transform((s) => s.toLowerCase())
      .pipe(z.enum(['tcp', 'udp'], { error: 'must be tcp or udp' }))
      .default('tcp'),
  }),
);

const parameterSchema = z.union([
  // SingularityDockerParameter.fromString: a bare option name, value ''
  z
    .string()
    .min(1)
    .max(200)
    .transform((key) => ({ key, value: '' })),
  nullsAsAbsent(z.strictObject({ key: z.string().min(1).max(200), value: z.string().max(4096).default('') })),
]);

const volumeSchema = nullsAsAbsent(
  z.strictObject({
    containerPath: absolutePath,
    hostPath: absolutePath.optional().describe('On the Docker host; absent: an anonymous Docker volume (or the named one of source)'),
    mode: z.enum(['RO', 'RW']).default('RO').describe("Singularity's default is RO"),
    source: nullsAsAbsent(
      z.strictObject({
        type: z.enum(['DOCKER_VOLUME', 'UNKNOWN']).default('UNKNOWN'),
        dockerVolume: nullsAsAbsent(
          z.strictObject({
            driver: z.string().min(1).max(LIMITS.name).optional(),
            name: z
              .string()
              .max(LIMITS.name)
              .regex(/^[A-Za-z0-9][A-Za-z0-9_.%-]*$/, { error: 'must be a Docker volume name (%i is the instance number)' })
              .optional(),
            driverOptions: boundedRecord(text(LIMITS.name), text(4096), LIMITS.list).optional(),
          }),
        ).optional(),
      }),
    ).optional(),
  }),
);

const dockerSchema = nullsAsAbsent(
  z.strictObject({
    image: z.string().min(1).max(512),
    privileged: boolish.default(false),
    network: z.enum(DOCKER_NETWORKS).default('HOST').describe("Mesos' default is HOST"),
    portMappings: z
      .array(portMappingSchema)
      .max(100)
      .default(() => []),
    forcePullImage: boolish.default(false),
    parameters: boundedRecord(text(200), text(4096), 200).optional().describe('Deprecated map form of dockerParameters'),
    dockerParameters: z.array(parameterSchema).max(200).optional(),
    volumes: z.array(volumeSchema).max(100).optional().describe("Singularity's UI puts volumes here; read as containerInfo.volumes"),
  }),
);

export const containerInfoSchema = nullsAsAbsent(
  z.strictObject({
    type: z.enum(CONTAINER_TYPES).default('MESOS'),
    docker: dockerSchema.optional(),
    volumes: z.array(volumeSchema).max(100).optional(),
    mesos: nullsAsAbsent(z.strictObject({ image: boundedJson().optional() })).optional(),
    networkInfos: list(boundedJson()).optional(),
  }),
);

export type RawContainerInfo = z.output<typeof containerInfoSchema>;

interface DeployFacts {
  numPorts: number;
  memoryMb: number;
  command?: string;
  shell?: boolean;
}

/** Rules across containerInfo and the rest of the deploy; paths are from the deploy's root. */
export function containerRules(c: RawContainerInfo, d: DeployFacts, containers: boolean, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path: ['containerInfo', ...path], message });
  if (c.mesos?.image !== undefined)
    issue(['mesos', 'image'], 'Mesos container images are not supported; use type DOCKER with docker.image');
  if (c.networkInfos && c.networkInfos.length > 0) issue(['networkInfos'], 'Mesos network infos are not supported; use docker.network');
  if (c.type === 'MESOS') {
    if (c.docker) issue(['docker'], 'is given with type MESOS; set type DOCKER to run the image');
    if (c.volumes && c.volumes.length > 0) issue(['volumes'], 'only Docker containers (type DOCKER) mount volumes');
    return;
  }
  if (!containers) {
    issue(['type'], 'DOCKER needs a Docker host and this server has none (start Fledge with --docker-host)');
    return;
  }
  const docker = c.docker;
  if (!docker) {
    issue(['docker'], 'is required with type DOCKER (at least docker.image)');
    return;
  }
  if (d.memoryMb < MIN_MEMORY_MB) {
    ctx.addIssue({
      code: 'custom',
      path: ['resources', 'memoryMb'],
      message: `must be at least ${MIN_MEMORY_MB} for a Docker container (Docker's minimum)`,
    });
  }
  if (docker.volumes && docker.volumes.length > 0 && c.volumes && c.volumes.length > 0) {
    issue(['docker', 'volumes'], 'give volumes in containerInfo.volumes or in containerInfo.docker.volumes, not both');
  }
  const literalHostPorts = new Set<number>();
  docker.portMappings.forEach((m, i) => {
    if (docker.network !== 'BRIDGE')
      issue(['docker', 'portMappings', i], `apply with network BRIDGE only (this deploy's network is ${docker.network})`);
    for (const side of ['container', 'host'] as const) {
      const type = m[`${side}PortType`];
      const value = m[`${side}Port`];
      if (type === 'FROM_OFFER' && value >= d.numPorts) {
        issue(['docker', 'portMappings', i, `${side}Port`], `is a FROM_OFFER index and must be < resources.numPorts (${d.numPorts})`);
      }
      if (type === 'LITERAL' && value < 1) issue(['docker', 'portMappings', i, `${side}Port`], 'must be a port from 1 to 65535');
    }
    if (m.hostPortType === 'LITERAL') {
      if (literalHostPorts.has(m.hostPort)) issue(['docker', 'portMappings', i, 'hostPort'], `host port ${m.hostPort} is mapped twice`);
      literalHostPorts.add(m.hostPort);
    }
  });
  const params = readParameters(docker);
  params.list.forEach((p, i) => {
    const why = parameterIssue(p.key, p.value);
    if (why) issue(['docker', params.field, ...(params.field === 'parameters' ? [p.key] : [i])], `${p.key} ${why}`);
  });
  if (d.shell && params.list.some((p) => normaliseParameterKey(p.key) === 'entrypoint')) {
    issue(['docker', params.field], 'entrypoint conflicts with shell: true (which runs command with /bin/sh -c)');
  }
  const volumes = [...(c.volumes ?? []), ...(docker.volumes ?? [])];
  const volumesField = c.volumes?.length ? 'volumes' : 'docker';
  volumes.forEach((v, i) => {
    const path = volumesField === 'volumes' ? ['volumes', i] : ['docker', 'volumes', i];
    if (v.source && v.source.type !== 'DOCKER_VOLUME') issue([...path, 'source', 'type'], 'only DOCKER_VOLUME sources are supported');
    if (v.source?.type === 'DOCKER_VOLUME' && !v.source.dockerVolume)
      issue([...path, 'source', 'dockerVolume'], 'is required with type DOCKER_VOLUME');
    if (v.source && v.hostPath !== undefined) issue([...path, 'hostPath'], 'give hostPath or source, not both');
  });
  if (d.shell && d.command === undefined) {
    ctx.addIssue({ code: 'custom', path: ['shell'], message: 'shell: true needs command (it runs command with /bin/sh -c)' });
  }
}

/** dockerParameters when given (Singularity's rule), else the deprecated `parameters` map. */
function readParameters(docker: NonNullable<RawContainerInfo['docker']>): {
  list: DockerParameter[];
  field: 'dockerParameters' | 'parameters';
} {
  if (docker.dockerParameters !== undefined) return { list: docker.dockerParameters, field: 'dockerParameters' };
  return { list: Object.entries(docker.parameters ?? {}).map(([key, value]) => ({ key, value })), field: 'parameters' };
}

/** Validated containerInfo → the stored shape, with warnings for what was read differently. */
export function normaliseContainer(c: RawContainerInfo): { value: ContainerInfo; warnings: { field: string; message: string }[] } {
  const warnings: { field: string; message: string }[] = [];
  if (c.type !== 'DOCKER' || !c.docker) return { value: { type: 'MESOS' }, warnings };
  const docker = c.docker;
  const params = readParameters(docker);
  if (docker.dockerParameters !== undefined && docker.parameters !== undefined) {
    const same =
      JSON.stringify(Object.entries(docker.parameters).map(([key, value]) => ({ key, value }))) === JSON.stringify(docker.dockerParameters);
    if (!same) {
      warnings.push({
        field: 'containerInfo.docker.parameters',
        message: 'dockerParameters is given too and wins (as in Singularity); these parameters are not used',
      });
    }
  }
  if (docker.volumes && docker.volumes.length > 0) {
    warnings.push({ field: 'containerInfo.docker.volumes', message: 'read as containerInfo.volumes (where Singularity reads them)' });
  }
  const volumes: ContainerVolume[] = [...(c.volumes ?? []), ...(docker.volumes ?? [])].map((v) => {
    const out: ContainerVolume = { containerPath: v.containerPath, mode: v.mode };
    if (v.hostPath !== undefined) out.hostPath = v.hostPath;
    if (v.source?.type === 'DOCKER_VOLUME' && v.source.dockerVolume) {
      const dv = v.source.dockerVolume;
      out.source = {
        type: 'DOCKER_VOLUME',
        dockerVolume: {
          ...(dv.driver !== undefined ? { driver: dv.driver } : {}),
          ...(dv.name !== undefined ? { name: dv.name } : {}),
          ...(dv.driverOptions !== undefined ? { driverOptions: dv.driverOptions } : {}),
        },
      };
    }
    return out;
  });
  const portMappings: DockerPortMapping[] = docker.portMappings.map((m) => ({ ...m }));
  return {
    value: {
      type: 'DOCKER',
      docker: {
        image: docker.image,
        privileged: docker.privileged,
        network: docker.network,
        portMappings,
        forcePullImage: docker.forcePullImage,
        dockerParameters: params.list.map((p) => ({ key: p.key, value: p.value })),
      },
      volumes,
    },
    warnings,
  };
}
