// A deploy's container, in Singularity's shape (SingularityContainerInfo and friends) after
// validation and defaults, so that a deploy read back from the API can be posted again as is.
// Pure data; the Docker runtime turns it into a Docker Engine API call.

export const CONTAINER_TYPES = ['MESOS', 'DOCKER'] as const;
export const DOCKER_NETWORKS = ['HOST', 'BRIDGE', 'NONE'] as const;
export const PORT_MAPPING_TYPES = ['LITERAL', 'FROM_OFFER'] as const;

export type DockerNetwork = (typeof DOCKER_NETWORKS)[number];
export type PortMappingType = (typeof PORT_MAPPING_TYPES)[number];

export interface DockerPortMapping {
  /** LITERAL: containerPort is a port number; FROM_OFFER: an index into the task's ports */
  containerPortType: PortMappingType;
  containerPort: number;
  hostPortType: PortMappingType;
  hostPort: number;
  protocol: 'tcp' | 'udp';
}

/** One `docker run` option: `key` without dashes (`cap-add`), `value` its argument ('' for flags). */
export interface DockerParameter {
  key: string;
  value: string;
}

export interface DockerInfo {
  image: string;
  privileged: boolean;
  /** Mesos' default is HOST */
  network: DockerNetwork;
  portMappings: DockerPortMapping[];
  forcePullImage: boolean;
  dockerParameters: DockerParameter[];
}

export interface ContainerVolume {
  containerPath: string;
  /** absent: an anonymous (or, with source, a named) Docker volume */
  hostPath?: string;
  /** Singularity's default is RO */
  mode: 'RO' | 'RW';
  source?: { type: 'DOCKER_VOLUME'; dockerVolume: { driver?: string; name?: string; driverOptions?: Record<string, string> } };
}

export interface ContainerInfo {
  /** MESOS: no container, the task runs as a process (Singularity's UI always sends this) */
  type: (typeof CONTAINER_TYPES)[number];
  /** present exactly when type is DOCKER */
  docker?: DockerInfo;
  volumes?: ContainerVolume[];
}

export const isDockerDeploy = (deploy: { containerInfo?: ContainerInfo }): boolean => deploy.containerInfo?.type === 'DOCKER';

/** Host ports a BRIDGE container asks for by number (LITERAL): they must be free on its host. */
export function literalHostPorts(docker: DockerInfo): number[] {
  if (docker.network !== 'BRIDGE') return [];
  return docker.portMappings.filter((m) => m.hostPortType === 'LITERAL').map((m) => m.hostPort);
}
