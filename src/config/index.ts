// One config function: the option table (options.ts) read from flags and FLEDGE_* variables,
// then shaped into the config the server is built from. Validated at start-up; errors name the option.
import { resolve } from 'node:path';
import { isTimeZone } from '../core/jobs/cron.ts';
import { isAllowEntry } from '../webhooks/allow.ts';
import { ConfigError, readOptions, type OptionInput } from './options.ts';

export interface FledgeConfig {
  host: string;
  port: number;
  lbPort: number;
  dataDir: string;
  lb: 'builtin' | 'haproxy' | 'none';
  /** --lb haproxy: managed (Fledge runs `bin`) unless runtimeSocket is given (attached) */
  haproxy: HaproxyConfig;
  portRange: { from: number; to: number };
  capacity: { cpus: number; memoryMb: number };
  killGraceSeconds: number;
  drainTimeoutSeconds: number;
  /** run a canary whose LB settings differ from the active deploy's, without canary (else 400) */
  allowCanaryLbChange: boolean;
  /** modules whose exports are server-wide acceptance checks (hooks) */
  checkModules: string[];
  logLevel: string;
  jobs: {
    scheduleTimeZone: string;
    maxQueuedRuns: number;
    taskHistoryPerRequest: number;
    taskHistoryMaxAgeHours: number;
  };
  webhooks: { allow: string[]; timeoutSeconds: number; retryMaxSeconds: number; maxAgeSeconds: number };
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
  const config: FledgeConfig = {
    host: o.host,
    port: o.port,
    lbPort: o.lbPort,
    dataDir: resolve(o.dataDir),
    lb,
    haproxy,
    portRange: { from: o.portRangeFrom, to: o.portRangeTo },
    capacity: { cpus: o.cpus, memoryMb: o.memoryMb },
    killGraceSeconds: o.killGraceSeconds,
    drainTimeoutSeconds: o.drainTimeoutSeconds,
    allowCanaryLbChange: o.allowCanaryLbChange,
    checkModules: (o.checkModule ?? []).map((p) => resolve(p)),
    logLevel: o.logLevel,
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
  };
  if (!isTimeZone(config.jobs.scheduleTimeZone)) {
    throw new ConfigError(`Invalid schedule-time-zone (FLEDGE_SCHEDULE_TIME_ZONE): ${config.jobs.scheduleTimeZone} is not a time zone`);
  }
  for (const entry of config.webhooks.allow) {
    if (!isAllowEntry(entry))
      throw new ConfigError(`Invalid webhook-allow (FLEDGE_WEBHOOK_ALLOW): ${entry} is not a host name, address or CIDR range`);
  }
  if (config.portRange.from > config.portRange.to) {
    throw new ConfigError(`Invalid port range: ${config.portRange.from} > ${config.portRange.to}`);
  }
  return config;
}
