// One config function: the option table (options.ts) read from flags and FLEDGE_* variables,
// then shaped into the config the server is built from. Validated at start-up; errors name the option.
import { resolve } from 'node:path';
import type { AgentPlacement } from '../core/model.ts';
import { parseStoreSpec, StoreSpecError, type StoreLocation } from '../store/spec.ts';
import { HostConfigError, parseDockerHost, portClash } from '../hosts/config.ts';
import { LOCAL_HOST, type HostDefinition } from '../hosts/types.ts';
import { isLoopbackHost, parseAddressRange } from '../net/addresses.ts';
import { isTimeZone } from '../core/jobs/cron.ts';
import { isAllowEntry } from '../webhooks/allow.ts';
import { ConfigError, readOptions, type OptionInput } from './options.ts';

export interface FledgeConfig {
  /** the API's listen address */
  host: string;
  port: number;
  /** the load balancer's listen address (builtin proxy or managed HAProxy frontend) */
  lbHost: string;
  lbPort: number;
  dataDir: string;
  lb: 'builtin' | 'haproxy' | 'none' | 'fake';
  /** the local host's runtime (fake: simulated tasks, --allow-fakes only) */
  runtime: 'process' | 'fake';
  /** health checks (fake: healthy at once, --allow-fakes only) */
  health: 'probe' | 'fake';
  /** acceptance checks (fake: every declared check succeeds, --allow-fakes only) */
  checks: 'real' | 'fake';
  /** --lb haproxy: managed (Fledge runs `bin`) unless runtimeSocket is given (attached) */
  haproxy: HaproxyConfig;
  portRange: { from: number; to: number };
  capacity: { cpus: number; memoryMb: number };
  killGraceSeconds: number;
  /** what the artifact fetcher may download and keep */
  artifacts: ArtifactLimits;
  drainTimeoutSeconds: number;
  /** the LB's per-attempt upstream timeout, and its passive protection (both balancers) */
  lbUpstreamTimeoutSeconds: number;
  lbEjectAfterFailures: number;
  /** run a canary whose LB settings differ from the active deploy's, without canary (else 400) */
  allowCanaryLbChange: boolean;
  /** modules whose exports are server-wide acceptance checks (hooks) */
  checkModules: string[];
  /** Docker hosts (--docker-host), in the order placement tries them */
  dockerHosts: HostDefinition[];
  /** PEM files for tcp Docker endpoints */
  dockerTls?: { ca?: string; cert?: string; key?: string };
  hostUnreachableSeconds: number;
  defaultAgentPlacement: AgentPlacement;
  logLevel: string;
  logFormat: 'auto' | 'pretty' | 'json';
  /** SQLite in the data dir unless --store says otherwise */
  store: StoreLocation | { kind: 'memory' };
  /** PostgreSQL: the leader's lease and how often it is renewed */
  lease: { termMs: number; renewMs: number };
  /** the API URL this server is reached at (default from host and port) */
  advertiseUrl?: string;
  /** who may call the API, from where, and how much they may send */
  api: ApiSecurityConfig;
  /** limits of the load balancer's client side (builtin and HAProxy alike) */
  lbLimits: LbLimits;
  /** proxies whose X-Forwarded-* headers are believed (IPs or CIDR ranges) */
  trustForwardedFrom: string[];
  jobs: {
    scheduleTimeZone: string;
    maxQueuedRuns: number;
    taskHistoryPerRequest: number;
    taskHistoryMaxAgeHours: number;
  };
  webhooks: { allow: string[]; timeoutSeconds: number; retryMaxSeconds: number; maxAgeSeconds: number };
  /** `prometheus` checks: the default server, and the hosts a check may name instead */
  prometheus: { url?: string; allow: string[] };
}

export interface ArtifactLimits {
  maxBytes: number;
  timeoutMs: number;
  retries: number;
  cacheMaxBytes: number;
}

export interface ApiSecurityConfig {
  /** bearer tokens required (false only with --no-auth on a loopback API) */
  auth: boolean;
  /** where users reach Fledge (normalised, no trailing slash) */
  publicUrl?: string;
  /** extra Host names accepted, lower case */
  allowedHosts: string[];
  /** web origins allowed to call the API (CORS), normalised */
  allowedOrigins: string[];
  maxBodyBytes: number;
  maxInstances: number;
}

export interface LbLimits {
  maxConnections: number;
  maxHeaderBytes: number;
  headerTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
}

export interface HaproxyConfig {
  mode: 'managed' | 'attached';
  /** managed: the haproxy binary (default `haproxy` on PATH) */
  bin: string;
  /** attached: the stats socket (level admin) of the HAProxy the user runs */
  runtimeSocket?: string;
  /** attached: the configuration file Fledge writes for it */
  configPath?: string;
  /** attached: its master CLI socket, for the reload a new service may need */
  masterSocket?: string;
  /** how often HAProxy's servers are compared with Fledge's state and repaired */
  reconcileSeconds: number;
}

export type ConfigInput = OptionInput;

export function loadConfig(flags: ConfigInput = {}, env: NodeJS.ProcessEnv = process.env): FledgeConfig {
  const o = readOptions(flags, env);
  refuseFakes(o);
  const lb = o.lb as FledgeConfig['lb'];
  const runtimeSocket = o.haproxySocket !== undefined ? resolve(o.haproxySocket) : undefined;
  const configPath = o.haproxyConfig !== undefined ? resolve(o.haproxyConfig) : undefined;
  const masterSocket = o.haproxyMasterSocket !== undefined ? resolve(o.haproxyMasterSocket) : undefined;
  if (lb === 'haproxy' && runtimeSocket !== undefined && configPath === undefined) {
    throw new ConfigError(
      'Invalid haproxy-config (FLEDGE_HAPROXY_CONFIG): an attached HAProxy (haproxy-socket) needs the configuration file Fledge writes',
    );
  }
  const haproxy: HaproxyConfig = {
    mode: runtimeSocket !== undefined ? 'attached' : 'managed',
    bin: o.haproxyBin,
    ...(runtimeSocket !== undefined ? { runtimeSocket } : {}),
    ...(configPath !== undefined ? { configPath } : {}),
    ...(masterSocket !== undefined ? { masterSocket } : {}),
    reconcileSeconds: o.haproxyReconcileSeconds,
  };
  if (o.noAuth && !isLoopbackHost(o.host)) {
    throw new ConfigError(
      `Invalid no-auth (FLEDGE_NO_AUTH): the API would listen on ${o.host}, which other machines can reach; ` +
        'without tokens anyone there could run commands as this user. Use --host 127.0.0.1, or keep auth on',
    );
  }
  if (o.lbHeaderTimeoutSeconds > o.lbRequestTimeoutSeconds) {
    throw new ConfigError(
      `Invalid lb-header-timeout-seconds (FLEDGE_LB_HEADER_TIMEOUT_SECONDS): ${o.lbHeaderTimeoutSeconds} is longer than lb-request-timeout-seconds (${o.lbRequestTimeoutSeconds})`,
    );
  }
  const config: FledgeConfig = {
    host: o.host,
    port: o.port,
    lbHost: o.lbHost,
    lbPort: o.lbPort,
    dataDir: resolve(o.dataDir),
    lb,
    runtime: o.runtime as FledgeConfig['runtime'],
    health: o.health as FledgeConfig['health'],
    checks: o.checks as FledgeConfig['checks'],
    haproxy,
    portRange: { from: o.portRangeFrom, to: o.portRangeTo },
    capacity: { cpus: o.cpus, memoryMb: o.memoryMb },
    killGraceSeconds: o.killGraceSeconds,
    artifacts: {
      maxBytes: o.artifactMaxMb * 1024 * 1024,
      timeoutMs: o.artifactTimeoutSeconds * 1000,
      retries: o.artifactRetries,
      cacheMaxBytes: o.artifactCacheMb * 1024 * 1024,
    },
    drainTimeoutSeconds: o.drainTimeoutSeconds,
    lbUpstreamTimeoutSeconds: o.lbUpstreamTimeoutSeconds,
    lbEjectAfterFailures: o.lbEjectAfterFailures,
    allowCanaryLbChange: o.allowCanaryLbChange,
    checkModules: (o.checkModule ?? []).map((p) => resolve(p)),
    dockerHosts: [],
    hostUnreachableSeconds: o.hostUnreachableSeconds,
    defaultAgentPlacement: o.defaultAgentPlacement as AgentPlacement,
    logLevel: o.logLevel,
    logFormat: o.logFormat as FledgeConfig['logFormat'],
    api: {
      auth: !o.noAuth,
      ...(o.publicUrl !== undefined ? { publicUrl: publicUrl(o.publicUrl) } : {}),
      allowedHosts: (o.allowedHost ?? []).map(allowedHost),
      allowedOrigins: (o.allowedOrigin ?? []).map(allowedOrigin),
      maxBodyBytes: o.maxBodyBytes,
      maxInstances: o.maxInstances,
    },
    lbLimits: {
      maxConnections: o.lbMaxConnections,
      maxHeaderBytes: o.lbMaxHeaderBytes,
      headerTimeoutMs: Math.round(o.lbHeaderTimeoutSeconds * 1000),
      requestTimeoutMs: Math.round(o.lbRequestTimeoutSeconds * 1000),
      keepAliveTimeoutMs: Math.round(o.lbKeepAliveTimeoutSeconds * 1000),
    },
    trustForwardedFrom: (o.trustForwardedFrom ?? []).map(trustedAddress),
    store: storeOf(o.store, o.dataDir),
    lease: { termMs: Math.round(o.leaseSeconds * 1000), renewMs: Math.round(o.leaseRenewSeconds * 1000) },
    ...(o.advertiseUrl !== undefined ? { advertiseUrl: o.advertiseUrl.replace(/\/+$/, '') } : {}),
    jobs: {
      scheduleTimeZone: o.scheduleTimeZone ?? Intl.DateTimeFormat().resolvedOptions().timeZone,
      maxQueuedRuns: o.maxQueuedRuns,
      taskHistoryPerRequest: o.taskHistoryPerRequest,
      taskHistoryMaxAgeHours: o.taskHistoryMaxAgeHours,
    },
    webhooks: {
      allow: o.webhookAllow ?? [],
      timeoutSeconds: o.webhookTimeoutSeconds,
      retryMaxSeconds: o.webhookRetryMaxSeconds,
      maxAgeSeconds: o.webhookMaxAgeSeconds,
    },
    prometheus: {
      ...(o.prometheusUrl !== undefined ? { url: o.prometheusUrl.replace(/\/+$/, '') } : {}),
      allow: o.prometheusAllow ?? [],
    },
  };
  if (!isTimeZone(config.jobs.scheduleTimeZone)) {
    throw new ConfigError(`Invalid schedule-time-zone (FLEDGE_SCHEDULE_TIME_ZONE): ${config.jobs.scheduleTimeZone} is not a time zone`);
  }
  for (const entry of config.webhooks.allow) {
    if (!isAllowEntry(entry))
      throw new ConfigError(`Invalid webhook-allow (FLEDGE_WEBHOOK_ALLOW): ${entry} is not a host name, address or CIDR range`);
  }
  for (const entry of config.prometheus.allow) {
    if (!isAllowEntry(entry))
      throw new ConfigError(`Invalid prometheus-allow (FLEDGE_PROMETHEUS_ALLOW): ${entry} is not a host name, address or CIDR range`);
  }
  if (o.prometheusUrl !== undefined && !(URL.canParse(o.prometheusUrl) && /^https?:$/.test(new URL(o.prometheusUrl).protocol))) {
    throw new ConfigError(`Invalid prometheus-url (FLEDGE_PROMETHEUS_URL): ${JSON.stringify(o.prometheusUrl)} is not an http(s) URL`);
  }
  if (o.advertiseUrl !== undefined && !/^https?:\/\/[^/\s]+/.test(o.advertiseUrl)) {
    throw new ConfigError(`Invalid advertise-url (FLEDGE_ADVERTISE_URL): ${JSON.stringify(o.advertiseUrl)} is not an http(s) URL`);
  }
  if (o.leaseRenewSeconds * 3 > o.leaseSeconds) {
    throw new ConfigError(
      `Invalid lease-renew-seconds (FLEDGE_LEASE_RENEW_SECONDS): ${o.leaseRenewSeconds} s must be at most a third of lease-seconds (${o.leaseSeconds} s), so a renewal can fail twice without losing the lease`,
    );
  }
  if (config.store.kind === 'postgres') {
    // Several schedulers share the state, and only the leader runs the LB: it must live outside them.
    if (lb === 'builtin') {
      throw new ConfigError(
        'Invalid lb (FLEDGE_LB): the built-in load balancer runs inside one scheduler, so with --store postgres (several schedulers, one leader) it would move, and stop, with the leader. Run HAProxy yourself and attach every scheduler to it: --lb haproxy --haproxy-socket <stats socket> --haproxy-config <file> --haproxy-master-socket <master socket> (or --lb none)',
      );
    }
    if (lb === 'haproxy' && haproxy.mode === 'managed') {
      throw new ConfigError(
        'Invalid haproxy-socket (FLEDGE_HAPROXY_SOCKET): with --store postgres each scheduler would start its own managed HAProxy; run one HAProxy yourself and attach every scheduler to it with --haproxy-socket, --haproxy-config and --haproxy-master-socket',
      );
    }
  }
  if (config.portRange.from > config.portRange.to) {
    throw new ConfigError(`Invalid port range: ${config.portRange.from} > ${config.portRange.to}`);
  }
  const hostOption = 'docker-host (FLEDGE_DOCKER_HOSTS)';
  for (const spec of o.dockerHost ?? []) {
    try {
      config.dockerHosts.push(parseDockerHost(spec, { portRange: config.portRange }));
    } catch (err) {
      if (err instanceof HostConfigError) throw new ConfigError(`Invalid ${hostOption}: ${err.message}`);
      throw err;
    }
  }
  const ids = config.dockerHosts.map((h) => h.id);
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice) throw new ConfigError(`Invalid ${hostOption}: host ${twice} is given twice`);
  const clash = portClash([{ id: LOCAL_HOST, address: '127.0.0.1', portRange: config.portRange }, ...config.dockerHosts]);
  if (clash) throw new ConfigError(`Invalid ${hostOption}: ${clash}`);
  const tls = {
    ...(o.dockerTlsCa !== undefined ? { ca: resolve(o.dockerTlsCa) } : {}),
    ...(o.dockerTlsCert !== undefined ? { cert: resolve(o.dockerTlsCert) } : {}),
    ...(o.dockerTlsKey !== undefined ? { key: resolve(o.dockerTlsKey) } : {}),
  };
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new ConfigError('Invalid docker-tls-cert (FLEDGE_DOCKER_TLS_CERT): the client certificate and docker-tls-key go together');
  }
  if (Object.keys(tls).length > 0) config.dockerTls = tls;
  return config;
}

function publicUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`Invalid public-url (FLEDGE_PUBLIC_URL): ${JSON.stringify(raw)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`Invalid public-url (FLEDGE_PUBLIC_URL): ${JSON.stringify(raw)} is not an http:// or https:// URL`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function allowedOrigin(raw: string): string {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  const bare = url && url.pathname === '/' && !url.search && !url.hash && !url.username && !url.password;
  if (!url || !bare || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new ConfigError(
      `Invalid allowed-origin (FLEDGE_ALLOWED_ORIGINS): ${JSON.stringify(raw)} is not an origin like https://ui.example.com or http://localhost:5173`,
    );
  }
  return url.origin;
}

function allowedHost(raw: string): string {
  const host = raw.trim().toLowerCase();
  if (!/^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)$/.test(host)) {
    throw new ConfigError(
      `Invalid allowed-host (FLEDGE_ALLOWED_HOSTS): ${JSON.stringify(raw)} is not a host name or address (no scheme, no port)`,
    );
  }
  return host.replace(/^\[|\]$/g, '');
}

function trustedAddress(raw: string): string {
  if (!parseAddressRange(raw)) {
    throw new ConfigError(
      `Invalid trust-forwarded-from (FLEDGE_TRUST_FORWARDED_FROM): ${JSON.stringify(raw)} is not an IP address or CIDR range`,
    );
  }
  return raw.trim();
}

/**
 * The fakes run nothing real (no task, no route, no probe, nothing kept): one selected by
 * mistake in production would report a healthy fleet that does not exist. Only with --allow-fakes.
 */
function refuseFakes(o: ReturnType<typeof readOptions>): void {
  if (o.allowFakes) return;
  const fakes: [string, string, boolean][] = [
    ['runtime', 'FLEDGE_RUNTIME', o.runtime === 'fake'],
    ['lb', 'FLEDGE_LB', o.lb === 'fake'],
    ['health', 'FLEDGE_HEALTH', o.health === 'fake'],
    ['checks', 'FLEDGE_CHECKS', o.checks === 'fake'],
    ['store', 'FLEDGE_STORE', o.store === 'memory'],
  ];
  const chosen = fakes.find(([, , fake]) => fake);
  if (!chosen) return;
  const [name, env] = chosen;
  const value = name === 'store' ? 'memory' : 'fake';
  throw new ConfigError(
    `Invalid ${name} (${env}): ${value} is a fake for tests and the scale bench (it runs nothing real); give --allow-fakes (FLEDGE_ALLOW_FAKES=true) to use it`,
  );
}

function storeOf(spec: string | undefined, dataDir: string): FledgeConfig['store'] {
  if (spec === 'memory') return { kind: 'memory' };
  try {
    return parseStoreSpec(spec, dataDir);
  } catch (err) {
    if (err instanceof StoreSpecError) throw new ConfigError(`Invalid store (FLEDGE_STORE): ${err.message}`);
    throw err;
  }
}
