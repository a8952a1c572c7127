// A task → the body of Docker's POST /containers/create. Pure: the deploy schema uses the same
// parameter table to refuse, at deploy time, what the runtime could not translate.
//
// - Command: Singularity's rule for containers (shell is false unless the deploy says so):
//   `command` and `arguments` are the container's Cmd (the image's Entrypoint stays); with
//   `shell: true`, `command` runs under /bin/sh -c. Neither given: the image's own Cmd.
// - Network: HOST (Mesos' default) and NONE as is; BRIDGE publishes portMappings (LITERAL or
//   FROM_OFFER container and host ports; FROM_OFFER is an index into the task's ports), or, with
//   no mappings, each of the task's ports on itself.
// - Limits: resources.cpus → NanoCpus, memoryMb → Memory with no swap, so an excess is an OOM
//   kill rather than swapping. An init process is PID 1, so signals reach the task.
// - `dockerParameters` are `docker run` options: each supported one is translated into the API
//   field `docker run` would set; the rest are refused with the reason (never dropped).
import type { ContainerVolume, DockerInfo, DockerParameter, DockerPortMapping } from '../../core/container.ts';

/** Labels on every container Fledge creates; recovery finds containers by them. */
export const LABELS = {
  installation: 'fledge.installation',
  task: 'fledge.task',
  request: 'fledge.request',
  deploy: 'fledge.deploy',
  instance: 'fledge.instance',
  host: 'fledge.host',
  ports: 'fledge.ports',
  literalPorts: 'fledge.literal-ports',
  cpus: 'fledge.cpus',
  memoryMb: 'fledge.memory-mb',
} as const;

export interface ContainerInput {
  taskId: string;
  instanceNo: number;
  docker: DockerInfo;
  volumes: ContainerVolume[];
  command?: string;
  arguments?: string[];
  shell?: boolean;
  /** the task's env, PORT*, TASK_ID... included */
  env: Record<string, string>;
  /** the task's ports on the host (PORT0..n) */
  ports: number[];
  cpus: number;
  memoryMb: number;
  labels: Record<string, string>;
}

export interface ContainerPlan {
  /** the POST /containers/create body */
  body: CreateBody;
  /** what stop() sends first (stop-signal, default SIGTERM) */
  stopSignal: string;
}

export interface CreateBody {
  Image: string;
  Cmd?: string[];
  Entrypoint?: string[];
  Env: string[];
  Labels: Record<string, string>;
  ExposedPorts?: Record<string, Record<string, never>>;
  StopSignal?: string;
  User?: string;
  WorkingDir?: string;
  Hostname?: string;
  Domainname?: string;
  Tty: false;
  OpenStdin: false;
  HostConfig: HostConfig;
}

export interface HostConfig {
  NetworkMode: 'host' | 'bridge' | 'none';
  PortBindings?: Record<string, { HostIp: string; HostPort: string }[]>;
  Privileged: boolean;
  Init: true;
  NanoCpus: number;
  Memory: number;
  MemorySwap: number;
  Binds?: string[];
  Mounts?: Mount[];
  RestartPolicy: { Name: 'no' };
  LogConfig: { Type: string; Config: Record<string, string> };
  [key: string]: unknown;
}

interface Mount {
  Type: 'volume';
  Target: string;
  ReadOnly: boolean;
  Source?: string;
  VolumeOptions?: { DriverConfig?: { Name?: string; Options?: Record<string, string> } };
}

export const MIN_MEMORY_MB = 6;
const MB = 1024 * 1024;
/** what Docker keeps of a container's output; Fledge copies it to the sandbox as it comes */
const DEFAULT_LOG_CONFIG = { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '2' } };
/** log drivers whose output the logs API can read back (Fledge's task logs come from it) */
const READABLE_LOG_DRIVERS = new Set(['json-file', 'local', 'journald']);

export function planContainer(input: ContainerInput): ContainerPlan {
  const { docker } = input;
  const translated = translateParameters(docker.dockerParameters);
  if (translated.errors.length > 0) throw new Error(translated.errors.map((e) => `${e.key}: ${e.rule}`).join('; '));
  const env = [...translated.env, ...Object.entries(input.env).map(([k, v]) => `${k}=${v}`)];

  const body: CreateBody = {
    Image: docker.image,
    Env: env,
    Labels: { ...translated.labels, ...input.labels },
    Tty: false,
    OpenStdin: false,
    ...translated.config,
    HostConfig: {
      ...translated.hostConfig,
      NetworkMode: docker.network === 'HOST' ? 'host' : docker.network === 'BRIDGE' ? 'bridge' : 'none',
      Privileged: docker.privileged,
      Init: true,
      NanoCpus: Math.round(input.cpus * 1e9),
      Memory: Math.round(input.memoryMb * MB),
      MemorySwap: Math.round(input.memoryMb * MB),
      RestartPolicy: { Name: 'no' },
      LogConfig: translated.logConfig ?? DEFAULT_LOG_CONFIG,
    },
  };

  if (input.shell) {
    body.Entrypoint = ['/bin/sh', '-c'];
    body.Cmd = [input.command ?? ''];
  } else {
    const cmd = [...(input.command !== undefined ? [input.command] : []), ...(input.arguments ?? [])];
    if (cmd.length > 0) body.Cmd = cmd;
    if (translated.entrypoint !== undefined) body.Entrypoint = translated.entrypoint;
  }

  if (docker.network === 'BRIDGE') {
    const bindings = portBindings(docker.portMappings, input.ports);
    body.ExposedPorts = { ...body.ExposedPorts, ...Object.fromEntries(Object.keys(bindings).map((k) => [k, {}])) };
    body.HostConfig.PortBindings = bindings;
  }

  const binds: string[] = [];
  const mounts: Mount[] = [];
  for (const v of input.volumes) {
    const readOnly = v.mode === 'RO';
    if (v.hostPath !== undefined) {
      binds.push(`${v.hostPath}:${v.containerPath}:${readOnly ? 'ro' : 'rw'}`);
    } else if (v.source) {
      const dv = v.source.dockerVolume;
      const mount: Mount = { Type: 'volume', Target: v.containerPath, ReadOnly: readOnly };
      if (dv.name !== undefined) mount.Source = dv.name.replaceAll('%i', String(input.instanceNo));
      if (dv.driver !== undefined || dv.driverOptions !== undefined) {
        mount.VolumeOptions = {
          DriverConfig: {
            ...(dv.driver !== undefined ? { Name: dv.driver } : {}),
            ...(dv.driverOptions ? { Options: dv.driverOptions } : {}),
          },
        };
      }
      mounts.push(mount);
    } else {
      mounts.push({ Type: 'volume', Target: v.containerPath, ReadOnly: readOnly });
    }
  }
  if (binds.length > 0) body.HostConfig.Binds = binds;
  if (mounts.length > 0) body.HostConfig.Mounts = mounts;

  return { body, stopSignal: translated.stopSignal ?? 'SIGTERM' };
}

/** BRIDGE: container port → host ports. FROM_OFFER values are indexes into the task's ports. */
export function portBindings(mappings: DockerPortMapping[], ports: number[]): Record<string, { HostIp: string; HostPort: string }[]> {
  const resolve = (type: DockerPortMapping['hostPortType'], value: number, what: string) => {
    if (type === 'LITERAL') return value;
    const port = ports[value];
    if (port === undefined) throw new Error(`${what}: FROM_OFFER index ${value} but the task has ${ports.length} port(s)`);
    return port;
  };
  const out: Record<string, { HostIp: string; HostPort: string }[]> = {};
  const list =
    mappings.length > 0
      ? mappings.map((m) => ({
          container: resolve(m.containerPortType, m.containerPort, 'containerPort'),
          host: resolve(m.hostPortType, m.hostPort, 'hostPort'),
          protocol: m.protocol,
        }))
      : // No mappings: publish each of the task's ports on itself, so $PORT0 answers on the host.
        ports.map((p) => ({ container: p, host: p, protocol: 'tcp' as const }));
  for (const m of list) {
    const key = `${m.container}/${m.protocol}`;
    (out[key] ??= []).push({ HostIp: '', HostPort: String(m.host) });
  }
  return out;
}

// ---- docker run options ----------------------------------------------------------------

interface Translated {
  env: string[];
  labels: Record<string, string>;
  config: Partial<Pick<CreateBody, 'User' | 'WorkingDir' | 'Hostname' | 'Domainname' | 'StopSignal' | 'ExposedPorts'>>;
  hostConfig: Record<string, unknown>;
  entrypoint?: string[];
  stopSignal?: string;
  logConfig?: { Type: string; Config: Record<string, string> };
  errors: { key: string; rule: string }[];
}

type Apply = (value: string, t: Translated) => string | undefined;

const list =
  (field: string): Apply =>
  (value, t) => {
    if (value === '') return 'needs a value';
    ((t.hostConfig[field] ??= []) as string[]).push(value);
    return undefined;
  };
const text =
  (set: (t: Translated, v: string) => void): Apply =>
  (value, t) => {
    if (value === '') return 'needs a value';
    set(t, value);
    return undefined;
  };
const hostText = (field: string): Apply => text((t, v) => (t.hostConfig[field] = v));
const hostInt =
  (field: string, min: number, max: number): Apply =>
  (value, t) => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value) || n < min || n > max) return `must be an integer from ${min} to ${max}`;
    t.hostConfig[field] = n;
    return undefined;
  };
const hostBytes =
  (field: string): Apply =>
  (value, t) => {
    const bytes = parseBytes(value);
    if (bytes === undefined) return 'must be a size such as 64m or 1g';
    t.hostConfig[field] = bytes;
    return undefined;
  };
const keyValue =
  (what: string, put: (t: Translated, k: string, v: string) => string | undefined): Apply =>
  (value, t) => {
    const eq = value.indexOf('=');
    if (eq <= 0) return `must be ${what}`;
    return put(t, value.slice(0, eq), value.slice(eq + 1));
  };

/** docker run options Fledge translates, by key (aliases point at the same entry). */
const SUPPORTED: Record<string, Apply> = {
  env: (value, t) => {
    if (!/^[^=]+=/.test(value)) return 'must be KEY=VALUE (a bare name would read the client machine’s env)';
    t.env.push(value);
    return undefined;
  },
  label: keyValue('key=value', (t, k, v) => {
    if (k.startsWith('fledge.')) return 'fledge.* labels are set by Fledge';
    t.labels[k] = v;
    return undefined;
  }),
  user: text((t, v) => (t.config.User = v)),
  workdir: text((t, v) => {
    t.config.WorkingDir = v;
  }),
  entrypoint: (value, t) => {
    t.entrypoint = [value];
    return undefined;
  },
  hostname: text((t, v) => (t.config.Hostname = v)),
  domainname: text((t, v) => (t.config.Domainname = v)),
  'stop-signal': text((t, v) => {
    t.stopSignal = /^\d+$/.test(v) || v.startsWith('SIG') ? v : `SIG${v.toUpperCase()}`;
    t.config.StopSignal = t.stopSignal;
  }),
  expose: (value, t) => {
    const m = /^(\d{1,5})(?:\/(tcp|udp))?$/.exec(value);
    if (!m) return 'must be a port or port/protocol, e.g. 8080/tcp';
    t.config.ExposedPorts = { ...t.config.ExposedPorts, [`${m[1]}/${m[2] ?? 'tcp'}`]: {} };
    return undefined;
  },
  'add-host': list('ExtraHosts'),
  'cap-add': list('CapAdd'),
  'cap-drop': list('CapDrop'),
  dns: list('Dns'),
  'dns-search': list('DnsSearch'),
  'dns-option': list('DnsOptions'),
  'security-opt': list('SecurityOpt'),
  'group-add': list('GroupAdd'),
  sysctl: keyValue('name=value', (t, k, v) => {
    t.hostConfig.Sysctls = { ...(t.hostConfig.Sysctls as object), [k]: v };
    return undefined;
  }),
  tmpfs: (value, t) => {
    if (!value.startsWith('/')) return 'must be /path[:options]';
    const colon = value.indexOf(':');
    const [dir, opts] = colon < 0 ? [value, ''] : [value.slice(0, colon), value.slice(colon + 1)];
    t.hostConfig.Tmpfs = { ...(t.hostConfig.Tmpfs as object), [dir]: opts };
    return undefined;
  },
  ulimit: keyValue('name=soft[:hard]', (t, k, v) => {
    const m = /^(-?\d+)(?::(-?\d+))?$/.exec(v);
    if (!m) return 'must be name=soft[:hard], e.g. nofile=1024:2048';
    const soft = Number(m[1]);
    ((t.hostConfig.Ulimits ??= []) as unknown[]).push({ Name: k, Soft: soft, Hard: m[2] !== undefined ? Number(m[2]) : soft });
    return undefined;
  }),
  device: (value, t) => {
    const [host, container, perms] = value.split(':');
    if (!host?.startsWith('/')) return 'must be /dev/host[:/dev/container[:rwm]]';
    ((t.hostConfig.Devices ??= []) as unknown[]).push({
      PathOnHost: host,
      PathInContainer: container || host,
      CgroupPermissions: perms || 'rwm',
    });
    return undefined;
  },
  'shm-size': hostBytes('ShmSize'),
  'memory-reservation': hostBytes('MemoryReservation'),
  'read-only': (value, t) => {
    if (!['', 'true', 'false'].includes(value)) return 'must be true, false or empty';
    t.hostConfig.ReadonlyRootfs = value !== 'false';
    return undefined;
  },
  'pids-limit': hostInt('PidsLimit', -1, 2 ** 31 - 1),
  'cpu-shares': hostInt('CpuShares', 2, 262_144),
  'oom-score-adj': hostInt('OomScoreAdj', -1000, 1000),
  'cpuset-cpus': hostText('CpusetCpus'),
  'cpuset-mems': hostText('CpusetMems'),
  ipc: hostText('IpcMode'),
  pid: hostText('PidMode'),
  uts: hostText('UTSMode'),
  userns: hostText('UsernsMode'),
  'cgroup-parent': hostText('CgroupParent'),
  runtime: hostText('Runtime'),
  'log-driver': (value, t) => {
    if (!READABLE_LOG_DRIVERS.has(value))
      return `must be one of ${[...READABLE_LOG_DRIVERS].join(', ')}: Fledge reads task logs back through Docker`;
    t.logConfig = { Type: value, Config: { ...(t.logConfig?.Config ?? {}) } };
    return undefined;
  },
  'log-opt': keyValue('key=value', (t, k, v) => {
    t.logConfig = { Type: t.logConfig?.Type ?? DEFAULT_LOG_CONFIG.Type, Config: { ...(t.logConfig?.Config ?? {}), [k]: v } };
    return undefined;
  }),
};

const ALIASES: Record<string, string> = {
  e: 'env',
  l: 'label',
  u: 'user',
  w: 'workdir',
  h: 'hostname',
  c: 'cpu-shares',
  'dns-opt': 'dns-option',
};

/** Options Fledge sets from other deploy fields or owns, with where to say it instead. */
const REFUSED: Record<string, string> = {
  network: 'set containerInfo.docker.network',
  net: 'set containerInfo.docker.network',
  publish: 'set containerInfo.docker.portMappings',
  p: 'set containerInfo.docker.portMappings',
  'publish-all': 'set containerInfo.docker.portMappings',
  P: 'set containerInfo.docker.portMappings',
  volume: 'set containerInfo.volumes',
  v: 'set containerInfo.volumes',
  mount: 'set containerInfo.volumes',
  'volumes-from': 'set containerInfo.volumes',
  memory: 'set resources.memoryMb: Fledge reserves it on the host and makes it the limit',
  m: 'set resources.memoryMb: Fledge reserves it on the host and makes it the limit',
  'memory-swap': 'Fledge runs containers without swap, so an excess is an OOM kill',
  cpus: 'set resources.cpus: Fledge reserves it on the host and makes it the limit',
  'cpu-quota': 'set resources.cpus',
  'cpu-period': 'set resources.cpus',
  privileged: 'set containerInfo.docker.privileged',
  name: 'Fledge names each container after its task id',
  rm: 'Fledge removes containers once their exit is recorded',
  restart: 'Fledge replaces tasks itself (a restarting container would run twice)',
  detach: 'Fledge always runs containers detached',
  d: 'Fledge always runs containers detached',
  interactive: 'Fledge runs containers without stdin',
  i: 'Fledge runs containers without stdin',
  tty: 'Fledge reads stdout and stderr apart, which a TTY merges',
  t: 'Fledge reads stdout and stderr apart, which a TTY merges',
  attach: 'Fledge runs containers detached',
  init: 'Fledge always runs an init process as PID 1',
  'env-file': 'the file would be read on the client machine; give env entries',
  'label-file': 'the file would be read on the client machine; give label entries',
  pull: 'set containerInfo.docker.forcePullImage',
  'stop-timeout': 'Fledge stops tasks with SIGTERM, then SIGKILL after --kill-grace-seconds',
  'health-cmd': 'Fledge health-checks tasks itself (deploy.healthcheck)',
};

/** Every supported key, for messages and docs. */
export const SUPPORTED_DOCKER_PARAMETERS = Object.keys(SUPPORTED).sort();

export function normaliseParameterKey(key: string): string {
  const bare = key.replace(/^-{1,2}/, '');
  return ALIASES[bare] ?? bare;
}

/** Why a docker run option cannot be used, or undefined when Fledge translates it. */
export function parameterIssue(key: string, value: string): string | undefined {
  const t = emptyTranslated();
  return applyParameter({ key, value }, t);
}

function applyParameter(p: DockerParameter, t: Translated): string | undefined {
  const bare = p.key.replace(/^-{1,2}/, '');
  const refused = REFUSED[bare];
  if (refused !== undefined) return `is not accepted as a docker parameter: ${refused}`;
  const apply = SUPPORTED[normaliseParameterKey(p.key)];
  if (!apply) return `is not a docker run option Fledge translates (supported: ${SUPPORTED_DOCKER_PARAMETERS.join(', ')})`;
  return apply(p.value, t);
}

function emptyTranslated(): Translated {
  return { env: [], labels: {}, config: {}, hostConfig: {}, errors: [] };
}

export function translateParameters(parameters: DockerParameter[]): Translated {
  const t = emptyTranslated();
  for (const p of parameters) {
    const issue = applyParameter(p, t);
    if (issue) t.errors.push({ key: p.key, rule: issue });
  }
  return t;
}

/** `64m`, `1g`, `1024` (bytes) → bytes. */
export function parseBytes(value: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$/i.exec(value.trim());
  if (!m) return undefined;
  const unit = { '': 1, b: 1, k: 1024, m: MB, g: 1024 * MB }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * unit);
}
