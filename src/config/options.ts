// Every server option, once: the `serve` flags, the FLEDGE_* variables, the validation and the
// README's options table are all made from this table (a test keeps the README in step).
import { availableParallelism, totalmem } from 'node:os';
import { AGENT_PLACEMENTS } from '../core/model.ts';

export type OptionType = 'int' | 'number' | 'string' | 'boolean' | 'path' | 'list' | 'enum';

export interface OptionSpec {
  /** the key in flags and in the raw option values, camelCase of the flag */
  readonly key: string;
  /** the flag without its argument, e.g. `--lb-port` */
  readonly flag: string;
  /** what the argument is called in --help, e.g. `port` (none for booleans) */
  readonly arg?: string;
  readonly env: string;
  readonly type: OptionType;
  readonly choices?: readonly string[];
  /** inclusive bounds of numbers */
  readonly min?: number;
  readonly max?: number;
  /** a value, or a function of the machine (cpus, memory) */
  readonly default?: string | number | boolean | (() => number);
  /** how the default reads in docs when it is not a plain value */
  readonly defaultText?: string;
  /** lists: what separates items in the env variable (default ',') */
  readonly separator?: string;
  readonly help: string;
}

export const SERVER_OPTIONS = [
  { key: 'host', flag: '--host', arg: 'host', env: 'FLEDGE_HOST', type: 'string', default: '127.0.0.1', help: 'API listen address' },
  { key: 'port', flag: '--port', arg: 'port', env: 'FLEDGE_PORT', type: 'int', min: 0, max: 65535, default: 7099, help: 'API port' },
  {
    key: 'lbPort',
    flag: '--lb-port',
    arg: 'port',
    env: 'FLEDGE_LB_PORT',
    type: 'int',
    min: 0,
    max: 65535,
    default: 7080,
    help: 'load balancer port (the built-in proxy, or the managed HAProxy frontend)',
  },
  {
    key: 'lbHost',
    flag: '--lb-host',
    arg: 'host',
    env: 'FLEDGE_LB_HOST',
    type: 'string',
    default: '127.0.0.1',
    help: 'load balancer listen address, independent of the API (--host)',
  },
  {
    key: 'lb',
    flag: '--lb',
    arg: 'kind',
    env: 'FLEDGE_LB',
    type: 'enum',
    choices: ['builtin', 'haproxy', 'none', 'fake'],
    default: 'builtin',
    help: 'load balancer (fake: in memory, routes nothing; for tests and the scale bench, needs --allow-fakes)',
  },
  {
    key: 'runtime',
    flag: '--runtime',
    arg: 'kind',
    env: 'FLEDGE_RUNTIME',
    type: 'enum',
    choices: ['process', 'fake'],
    default: 'process',
    help: "the local host's tasks: real processes, or fake (simulated tasks that run nothing; for tests and the scale bench, needs --allow-fakes)",
  },
  {
    key: 'health',
    flag: '--health',
    arg: 'kind',
    env: 'FLEDGE_HEALTH',
    type: 'enum',
    choices: ['probe', 'fake'],
    default: 'probe',
    help: "health checks: the deploys' probes, or fake (every task healthy at once, no probe; for tests and the scale bench, needs --allow-fakes)",
  },
  {
    key: 'checks',
    flag: '--checks',
    arg: 'kind',
    env: 'FLEDGE_CHECKS',
    type: 'enum',
    choices: ['real', 'fake'],
    default: 'real',
    help: "acceptance checks: the deploys' own, or fake (every declared check succeeds at once; for tests and the scale bench, needs --allow-fakes)",
  },
  {
    key: 'allowFakes',
    flag: '--allow-fakes',
    env: 'FLEDGE_ALLOW_FAKES',
    type: 'boolean',
    default: false,
    help: 'allow the fake runtime, balancer, health, checks and --store memory (nothing they run is real: never in production)',
  },
  {
    key: 'haproxyBin',
    flag: '--haproxy-bin',
    arg: 'path',
    env: 'FLEDGE_HAPROXY_BIN',
    type: 'string',
    default: 'haproxy',
    help: 'the haproxy binary Fledge runs with --lb haproxy (managed mode)',
  },
  {
    key: 'haproxySocket',
    flag: '--haproxy-socket',
    arg: 'path',
    env: 'FLEDGE_HAPROXY_SOCKET',
    type: 'path',
    help: 'attach to an HAProxy you run: its stats socket (level admin)',
  },
  {
    key: 'haproxyConfig',
    flag: '--haproxy-config',
    arg: 'path',
    env: 'FLEDGE_HAPROXY_CONFIG',
    type: 'path',
    help: 'attached HAProxy: the configuration file Fledge writes for it',
  },
  {
    key: 'haproxyMasterSocket',
    flag: '--haproxy-master-socket',
    arg: 'path',
    env: 'FLEDGE_HAPROXY_MASTER_SOCKET',
    type: 'path',
    help: 'attached HAProxy: its master CLI socket (reloads for new services)',
  },
  {
    key: 'haproxyReconcileSeconds',
    flag: '--haproxy-reconcile-seconds',
    arg: 'n',
    env: 'FLEDGE_HAPROXY_RECONCILE_SECONDS',
    type: 'int',
    min: 0,
    max: 86_400,
    default: 10,
    help: 'how often HAProxy is compared with Fledge and repaired (0: never)',
  },
  {
    key: 'store',
    flag: '--store',
    arg: 'url',
    env: 'FLEDGE_STORE',
    type: 'string',
    defaultText: 'SQLite in the data dir',
    help: 'state store: postgres://user:pass@host:port/db (several schedulers, one leader) or sqlite:<file or dir>; give a password in the env variable, not the flag (memory: SQLite in memory, lost at exit; for tests and the scale bench, needs --allow-fakes)',
  },
  {
    key: 'leaseSeconds',
    flag: '--lease-seconds',
    arg: 'n',
    env: 'FLEDGE_LEASE_SECONDS',
    type: 'number',
    min: 1,
    max: 600,
    default: 10,
    help: "PostgreSQL: the leader's lease; a follower takes over when it expires (at once when the leader's connections are gone)",
  },
  {
    key: 'leaseRenewSeconds',
    flag: '--lease-renew-seconds',
    arg: 'n',
    env: 'FLEDGE_LEASE_RENEW_SECONDS',
    type: 'number',
    min: 0.1,
    max: 200,
    default: 2,
    help: 'PostgreSQL: how often the leader renews its lease and heartbeats are written (at most a third of the lease)',
  },
  {
    key: 'advertiseUrl',
    flag: '--advertise-url',
    arg: 'url',
    env: 'FLEDGE_ADVERTISE_URL',
    type: 'string',
    defaultText: 'http://<host>:<port>',
    help: 'the API URL other schedulers and `fledge status` give for this server',
  },
  {
    key: 'dataDir',
    flag: '--data-dir',
    arg: 'dir',
    env: 'FLEDGE_DATA_DIR',
    type: 'path',
    default: './.fledge',
    help: 'where state and task sandboxes live',
  },
  {
    key: 'portRangeFrom',
    flag: '--port-range-from',
    arg: 'port',
    env: 'FLEDGE_PORT_RANGE_FROM',
    type: 'int',
    min: 1024,
    max: 65535,
    default: 31000,
    help: 'first port handed to tasks',
  },
  {
    key: 'portRangeTo',
    flag: '--port-range-to',
    arg: 'port',
    env: 'FLEDGE_PORT_RANGE_TO',
    type: 'int',
    min: 1024,
    max: 65535,
    default: 31999,
    help: 'last port handed to tasks',
  },
  {
    key: 'cpus',
    flag: '--cpus',
    arg: 'n',
    env: 'FLEDGE_CPUS',
    type: 'number',
    min: 0.01,
    max: 100_000,
    default: () => availableParallelism(),
    defaultText: "this machine's",
    help: 'CPUs offered to tasks',
  },
  {
    key: 'memoryMb',
    flag: '--memory-mb',
    arg: 'n',
    env: 'FLEDGE_MEMORY_MB',
    type: 'int',
    min: 1,
    max: 1e9,
    default: () => Math.floor(totalmem() / 1024 / 1024),
    defaultText: "this machine's",
    help: 'memory offered to tasks (MB)',
  },
  {
    key: 'killGraceSeconds',
    flag: '--kill-grace-seconds',
    arg: 'n',
    env: 'FLEDGE_KILL_GRACE_SECONDS',
    type: 'number',
    min: 0,
    max: 3600,
    default: 10,
    help: 'grace between SIGTERM and SIGKILL when a task is stopped',
  },
  {
    key: 'artifactMaxMb',
    flag: '--artifact-max-mb',
    arg: 'mb',
    env: 'FLEDGE_ARTIFACT_MAX_MB',
    type: 'int',
    min: 1,
    max: 1_000_000,
    default: 2048,
    help: "the largest artifact (uris, executorData's artifacts) a task may fetch, and the largest file it may unpack",
  },
  {
    key: 'artifactTimeoutSeconds',
    flag: '--artifact-timeout-seconds',
    arg: 'n',
    env: 'FLEDGE_ARTIFACT_TIMEOUT_SECONDS',
    type: 'number',
    min: 1,
    max: 86_400,
    default: 300,
    help: 'how long one attempt to download an artifact (or to unpack it) may take',
  },
  {
    key: 'artifactRetries',
    flag: '--artifact-retries',
    arg: 'n',
    env: 'FLEDGE_ARTIFACT_RETRIES',
    type: 'int',
    min: 0,
    max: 20,
    default: 3,
    help: 'attempts after the first when a download fails in a way that may pass (network, timeout, 5xx, checksum)',
  },
  {
    key: 'artifactCacheMb',
    flag: '--artifact-cache-mb',
    arg: 'mb',
    env: 'FLEDGE_ARTIFACT_CACHE_MB',
    type: 'int',
    min: 0,
    max: 10_000_000,
    default: 10_240,
    help: 'the artifact cache (cached uris, executor artifacts) in the data dir; least recently used files go first',
  },
  {
    key: 'drainTimeoutSeconds',
    flag: '--drain-timeout-seconds',
    arg: 'n',
    env: 'FLEDGE_DRAIN_TIMEOUT_SECONDS',
    type: 'number',
    min: 0,
    max: 3600,
    default: 30,
    help: 'how long a task leaving the load balancer may finish its in-flight requests',
  },
  {
    key: 'lbUpstreamTimeoutSeconds',
    flag: '--lb-upstream-timeout-seconds',
    arg: 'n',
    env: 'FLEDGE_LB_UPSTREAM_TIMEOUT_SECONDS',
    type: 'number',
    min: 0.1,
    max: 3600,
    default: 15,
    help: 'a task silent this long fails the request to it: an idempotent one with no answer yet goes to another task, others get a 504',
  },
  {
    key: 'lbEjectAfterFailures',
    flag: '--lb-eject-after-failures',
    arg: 'n',
    env: 'FLEDGE_LB_EJECT_AFTER_FAILURES',
    type: 'int',
    min: 0,
    max: 1000,
    default: 3,
    help: 'refused, reset or timed-out requests in a row that take a task out of LB rotation for a short back-off, and get it health-checked at once (0: never)',
  },
  {
    key: 'allowCanaryLbChange',
    flag: '--allow-canary-lb-change',
    env: 'FLEDGE_ALLOW_CANARY_LB_CHANGE',
    type: 'boolean',
    default: false,
    help: 'run canary deploys that change LB settings without canary (else they are a 400)',
  },
  {
    key: 'checkModule',
    flag: '--check-module',
    arg: 'path',
    env: 'FLEDGE_CHECK_MODULES',
    type: 'list',
    help: 'module exporting server-wide acceptance checks (repeatable; the env variable is comma-separated)',
  },
  {
    key: 'prometheusUrl',
    flag: '--prometheus-url',
    arg: 'url',
    env: 'FLEDGE_PROMETHEUS_URL',
    type: 'string',
    defaultText: 'none',
    help: 'the Prometheus server `prometheus` acceptance checks query unless they name another (http or https)',
  },
  {
    key: 'prometheusAllow',
    flag: '--prometheus-allow',
    arg: 'host',
    env: 'FLEDGE_PROMETHEUS_ALLOW',
    type: 'list',
    defaultText: 'none',
    help: 'hosts or CIDR ranges a `prometheus` check may name in its own url besides --prometheus-url (repeatable; the env variable is comma-separated)',
  },
  {
    key: 'noAuth',
    flag: '--no-auth',
    env: 'FLEDGE_NO_AUTH',
    type: 'boolean',
    default: false,
    help: 'serve the API without tokens; refused unless --host is a loopback address',
  },
  {
    key: 'publicUrl',
    flag: '--public-url',
    arg: 'url',
    env: 'FLEDGE_PUBLIC_URL',
    type: 'string',
    help: 'the URL users reach the API and UI at (e.g. behind a TLS proxy): its host and origin are accepted',
  },
  {
    key: 'allowedHost',
    flag: '--allowed-host',
    arg: 'host',
    env: 'FLEDGE_ALLOWED_HOSTS',
    type: 'list',
    help: 'another name the API may be called by in the Host header (repeatable; the env variable is comma-separated)',
  },
  {
    key: 'allowedOrigin',
    flag: '--allowed-origin',
    arg: 'origin',
    env: 'FLEDGE_ALLOWED_ORIGINS',
    type: 'list',
    help: 'a web origin (scheme://host[:port]) whose pages may call the API, with CORS (repeatable; comma-separated)',
  },
  {
    key: 'trustForwardedFrom',
    flag: '--trust-forwarded-from',
    arg: 'address',
    env: 'FLEDGE_TRUST_FORWARDED_FROM',
    type: 'list',
    help: 'proxies (IP or CIDR) whose X-Forwarded-* headers are kept and believed (repeatable; comma-separated)',
  },
  {
    key: 'maxBodyBytes',
    flag: '--max-body-bytes',
    arg: 'n',
    env: 'FLEDGE_MAX_BODY_BYTES',
    type: 'int',
    min: 1024,
    max: 1024 * 1024 * 1024,
    default: 1024 * 1024,
    help: 'largest API request body (413 beyond it)',
  },
  {
    key: 'maxInstances',
    flag: '--max-instances',
    arg: 'n',
    env: 'FLEDGE_MAX_INSTANCES',
    type: 'int',
    min: 1,
    max: 100_000,
    default: 1000,
    help: 'most instances one request may ask for (400 beyond it)',
  },
  {
    key: 'lbMaxConnections',
    flag: '--lb-max-connections',
    arg: 'n',
    env: 'FLEDGE_LB_MAX_CONNECTIONS',
    type: 'int',
    min: 1,
    max: 1_000_000,
    default: 4096,
    help: 'load balancer: most client connections at once (more wait or are refused)',
  },
  {
    key: 'lbMaxHeaderBytes',
    flag: '--lb-max-header-bytes',
    arg: 'n',
    env: 'FLEDGE_LB_MAX_HEADER_BYTES',
    type: 'int',
    min: 1024,
    max: 1024 * 1024,
    default: 16 * 1024,
    help: 'load balancer: largest request line and headers (431 or 400 beyond it)',
  },
  {
    key: 'lbHeaderTimeoutSeconds',
    flag: '--lb-header-timeout-seconds',
    arg: 'n',
    env: 'FLEDGE_LB_HEADER_TIMEOUT_SECONDS',
    type: 'number',
    min: 0.1,
    max: 3600,
    default: 10,
    help: 'load balancer: a client must send its request headers within this (slow clients)',
  },
  {
    key: 'lbRequestTimeoutSeconds',
    flag: '--lb-request-timeout-seconds',
    arg: 'n',
    env: 'FLEDGE_LB_REQUEST_TIMEOUT_SECONDS',
    type: 'number',
    min: 1,
    max: 86_400,
    default: 300,
    help: 'load balancer: a client must send its whole request, body included, within this',
  },
  {
    key: 'lbKeepAliveTimeoutSeconds',
    flag: '--lb-keep-alive-timeout-seconds',
    arg: 'n',
    env: 'FLEDGE_LB_KEEP_ALIVE_TIMEOUT_SECONDS',
    type: 'number',
    min: 0.1,
    max: 3600,
    default: 5,
    help: 'load balancer: an idle keep-alive client connection is closed after this',
  },
  {
    key: 'dockerHost',
    flag: '--docker-host',
    arg: 'spec',
    env: 'FLEDGE_DOCKER_HOSTS',
    type: 'list',
    separator: ';',
    help: 'a Docker host tasks with containerInfo DOCKER run on: id=<name>,endpoint=<unix:///path|tcp://addr:port>[,address=<addr>][,ports=<from>-<to>][,cpus=N,memory-mb=N][,attr.<k>=<v>] (repeatable; the env variable is ;-separated)',
  },
  {
    key: 'dockerTlsCa',
    flag: '--docker-tls-ca',
    arg: 'path',
    env: 'FLEDGE_DOCKER_TLS_CA',
    type: 'path',
    help: 'tcp Docker hosts: the CA certificate (PEM) their daemons present certificates of',
  },
  {
    key: 'dockerTlsCert',
    flag: '--docker-tls-cert',
    arg: 'path',
    env: 'FLEDGE_DOCKER_TLS_CERT',
    type: 'path',
    help: 'tcp Docker hosts: the client certificate (PEM) Fledge presents',
  },
  {
    key: 'dockerTlsKey',
    flag: '--docker-tls-key',
    arg: 'path',
    env: 'FLEDGE_DOCKER_TLS_KEY',
    type: 'path',
    help: "tcp Docker hosts: the client certificate's key (PEM)",
  },
  {
    key: 'hostUnreachableSeconds',
    flag: '--host-unreachable-seconds',
    arg: 'n',
    env: 'FLEDGE_HOST_UNREACHABLE_SECONDS',
    type: 'number',
    min: 0.5,
    max: 3600,
    default: 30,
    help: 'a Docker host that has not answered for this long is UNREACHABLE: its tasks are TASK_LOST and replaced on other hosts',
  },
  {
    key: 'defaultAgentPlacement',
    flag: '--default-agent-placement',
    arg: 'placement',
    env: 'FLEDGE_DEFAULT_AGENT_PLACEMENT',
    type: 'enum',
    choices: AGENT_PLACEMENTS,
    default: 'GREEDY',
    help: "agentPlacement of requests that do not set one (Singularity's defaultAgentPlacement)",
  },
  {
    key: 'scheduleTimeZone',
    flag: '--schedule-time-zone',
    arg: 'zone',
    env: 'FLEDGE_SCHEDULE_TIME_ZONE',
    type: 'string',
    defaultText: "the machine's zone",
    help: 'IANA time zone of SCHEDULED requests without scheduleTimeZone',
  },
  {
    key: 'maxQueuedRuns',
    flag: '--max-queued-runs',
    arg: 'n',
    env: 'FLEDGE_MAX_QUEUED_RUNS',
    type: 'int',
    min: 1,
    max: 100000,
    default: 1000,
    help: 'runs one request may have waiting in its queue (more are refused with 409)',
  },
  {
    key: 'taskHistoryPerRequest',
    flag: '--task-history-per-request',
    arg: 'n',
    env: 'FLEDGE_TASK_HISTORY_PER_REQUEST',
    type: 'int',
    min: 1,
    max: 1000000,
    default: 1000,
    help: 'finished tasks kept per request (older ones, with their logs, are deleted)',
  },
  {
    key: 'taskHistoryMaxAgeHours',
    flag: '--task-history-max-age-hours',
    arg: 'hours',
    env: 'FLEDGE_TASK_HISTORY_MAX_AGE_HOURS',
    type: 'int',
    min: 1,
    max: 87600,
    default: 720,
    help: 'finished tasks older than this are deleted with their logs',
  },
  {
    key: 'webhookAllow',
    flag: '--webhook-allow',
    arg: 'host',
    env: 'FLEDGE_WEBHOOK_ALLOW',
    type: 'list',
    defaultText: 'any',
    help: 'hosts or CIDR ranges webhooks may target (repeatable; the env variable is comma-separated)',
  },
  {
    key: 'webhookTimeoutSeconds',
    flag: '--webhook-timeout-seconds',
    arg: 'seconds',
    env: 'FLEDGE_WEBHOOK_TIMEOUT_SECONDS',
    type: 'int',
    min: 1,
    max: 300,
    default: 10,
    help: 'how long one webhook delivery attempt may take',
  },
  {
    key: 'webhookRetryMaxSeconds',
    flag: '--webhook-retry-max-seconds',
    arg: 'seconds',
    env: 'FLEDGE_WEBHOOK_RETRY_MAX_SECONDS',
    type: 'int',
    min: 1,
    max: 3600,
    default: 60,
    help: 'longest wait between attempts of a failing webhook delivery (from 1 s, doubling)',
  },
  {
    key: 'webhookMaxAgeSeconds',
    flag: '--webhook-max-age-seconds',
    arg: 'seconds',
    env: 'FLEDGE_WEBHOOK_MAX_AGE_SECONDS',
    type: 'int',
    min: 10,
    max: 2592000,
    default: 86400,
    help: 'a webhook delivery not accepted by then is dropped (logged)',
  },
  {
    key: 'logLevel',
    flag: '--log-level',
    arg: 'level',
    env: 'FLEDGE_LOG_LEVEL',
    type: 'enum',
    choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
    default: 'info',
    help: 'log level',
  },
  {
    key: 'logFormat',
    flag: '--log-format',
    arg: 'format',
    env: 'FLEDGE_LOG_FORMAT',
    type: 'enum',
    choices: ['auto', 'pretty', 'json'],
    default: 'auto',
    help: 'log lines: pretty (readable) or json (one object a line); auto: pretty on a terminal, json otherwise',
  },
] as const satisfies readonly OptionSpec[];

type Spec = (typeof SERVER_OPTIONS)[number];

type ValueOf<S extends OptionSpec> = S['type'] extends 'int' | 'number'
  ? number
  : S['type'] extends 'boolean'
    ? boolean
    : S['type'] extends 'list'
      ? string[]
      : string;

/** Validated option values: present when given or defaulted. */
export type OptionValues = {
  [S in Spec as S['key']]: S extends { default: string | number | boolean | (() => number) } ? ValueOf<S> : ValueOf<S> | undefined;
};

/** What a caller may pass as flags: any subset, as parsed values or raw strings. */
export type OptionInput = Partial<{ [S in Spec as S['key']]: ValueOf<S> | string }>;

export class ConfigError extends Error {}

function describe(spec: OptionSpec): string {
  return `${spec.flag.slice(2)} (${spec.env})`;
}

/** Parse one raw value (a flag's or an env variable's) by its spec; throws ConfigError naming it. */
export function parseOption(spec: OptionSpec, raw: unknown): string | number | boolean | string[] {
  const bad = (expected: string) => new ConfigError(`Invalid ${describe(spec)}: ${JSON.stringify(raw)} ${expected}`);
  switch (spec.type) {
    case 'int':
    case 'number': {
      const value = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      const min = spec.min ?? -Infinity;
      const max = spec.max ?? Infinity;
      const kind = spec.type === 'int' ? 'an integer' : 'a number';
      if (!Number.isFinite(value) || (spec.type === 'int' && !Number.isInteger(value)) || value < min || value > max) {
        throw bad(`is not ${kind} from ${min} to ${max}`);
      }
      return value;
    }
    case 'boolean':
      if (raw === true || raw === 'true' || raw === '1') return true;
      if (raw === false || raw === 'false' || raw === '0' || raw === '') return false;
      throw bad('is not true or false');
    case 'list': {
      const items = Array.isArray(raw) ? raw.map(String) : String(raw).split(spec.separator ?? ',');
      return items.map((s) => s.trim()).filter(Boolean);
    }
    case 'enum': {
      const value = String(raw);
      if (!spec.choices?.includes(value)) throw bad(`is not one of ${spec.choices?.join(', ')}`);
      return value;
    }
    case 'string':
    case 'path':
      if (typeof raw !== 'string' && typeof raw !== 'number') throw bad('is not a string');
      return String(raw);
  }
}

/** Flags win over FLEDGE_* variables, which win over defaults. */
export function readOptions(flags: Record<string, unknown>, env: NodeJS.ProcessEnv): OptionValues {
  const values: Record<string, unknown> = {};
  for (const spec of SERVER_OPTIONS as readonly OptionSpec[]) {
    const flag = flags[spec.key];
    const fromEnv = env[spec.env];
    const raw = flag !== undefined ? flag : fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined;
    if (raw !== undefined) values[spec.key] = parseOption(spec, raw);
    else if (spec.default !== undefined) values[spec.key] = typeof spec.default === 'function' ? spec.default() : spec.default;
  }
  for (const key of Object.keys(flags)) {
    if (!SERVER_OPTIONS.some((s) => s.key === key)) throw new ConfigError(`Unknown option: ${key}`);
  }
  return values as OptionValues;
}

/** The README's table of server options. */
export function optionsTable(): string {
  const rows = (SERVER_OPTIONS as readonly OptionSpec[]).map((s) => {
    const flag = s.arg ? `\`${s.flag} <${s.arg}>\`` : `\`${s.flag}\``;
    const def = s.defaultText ?? (s.default === undefined ? 'unset' : `\`${String(s.default)}\``);
    const choices = s.choices ? ` (${s.choices.join(' \\| ')})` : '';
    return `| ${flag} | \`${s.env}\` | ${def} | ${s.help}${choices} |`;
  });
  return ['| flag | env | default | what |', '|---|---|---|---|', ...rows].join('\n');
}
