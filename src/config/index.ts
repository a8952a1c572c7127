// One config function: flags win over FLEDGE_* env vars, which win over defaults.
// Validated at start-up; errors name the option.
import { availableParallelism, totalmem } from 'node:os';
import { resolve } from 'node:path';

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

export type ConfigInput = Partial<
  Record<
    | Exclude<keyof FledgeConfig, 'checkModules' | 'haproxy'>
    | 'portRangeFrom'
    | 'portRangeTo'
    | 'cpus'
    | 'memoryMb'
    | 'haproxyBin'
    | 'haproxySocket'
    | 'haproxyConfig'
    | 'haproxyMasterSocket'
    | 'haproxyReconcileSeconds',
    string | number | boolean
  >
> & { checkModule?: string[] };

export class ConfigError extends Error {}

export function loadConfig(flags: ConfigInput = {}, env: NodeJS.ProcessEnv = process.env): FledgeConfig {
  const pick = (key: string, envName: string): string | number | boolean | undefined =>
    (flags as Record<string, string | number | boolean | undefined>)[key] ?? env[envName];
  const int = (key: string, envName: string, fallback: number, min: number, max: number): number => {
    const raw = pick(key, envName);
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min || value > max) {
      throw new ConfigError(`Invalid ${key} (${envName}): ${String(raw)} is not a number from ${min} to ${max}`);
    }
    return value;
  };
  const bool = (key: string, envName: string): boolean => {
    const raw = pick(key, envName);
    return raw === true || raw === 'true' || raw === '1';
  };
  const lb = String(pick('lb', 'FLEDGE_LB') ?? 'builtin');
  if (lb !== 'builtin' && lb !== 'haproxy' && lb !== 'none')
    throw new ConfigError(`Invalid lb (FLEDGE_LB): ${lb}; expected builtin, haproxy or none`);
  const optionalPath = (key: string, envName: string): string | undefined => {
    const raw = pick(key, envName);
    return raw === undefined || raw === '' ? undefined : resolve(String(raw));
  };
  const runtimeSocket = optionalPath('haproxySocket', 'FLEDGE_HAPROXY_SOCKET');
  const configPath = optionalPath('haproxyConfig', 'FLEDGE_HAPROXY_CONFIG');
  const masterSocket = optionalPath('haproxyMasterSocket', 'FLEDGE_HAPROXY_MASTER_SOCKET');
  if (lb === 'haproxy' && runtimeSocket !== undefined && configPath === undefined) {
    throw new ConfigError(
      'Invalid haproxy-config (FLEDGE_HAPROXY_CONFIG): an attached HAProxy (haproxy-socket) needs the configuration file Fledge writes',
    );
  }
  const haproxy: HaproxyConfig = {
    mode: runtimeSocket !== undefined ? 'attached' : 'managed',
    bin: String(pick('haproxyBin', 'FLEDGE_HAPROXY_BIN') ?? 'haproxy'),
    ...(runtimeSocket !== undefined ? { runtimeSocket } : {}),
    ...(configPath !== undefined ? { configPath } : {}),
    ...(masterSocket !== undefined ? { masterSocket } : {}),
    reconcileSeconds: int('haproxyReconcileSeconds', 'FLEDGE_HAPROXY_RECONCILE_SECONDS', 10, 0, 86_400),
  };
  const config: FledgeConfig = {
    host: String(pick('host', 'FLEDGE_HOST') ?? '127.0.0.1'),
    port: int('port', 'FLEDGE_PORT', 7099, 0, 65535),
    lbPort: int('lbPort', 'FLEDGE_LB_PORT', 7080, 0, 65535),
    dataDir: resolve(String(pick('dataDir', 'FLEDGE_DATA_DIR') ?? './.fledge')),
    lb,
    haproxy,
    portRange: {
      from: int('portRangeFrom', 'FLEDGE_PORT_RANGE_FROM', 31000, 1024, 65535),
      to: int('portRangeTo', 'FLEDGE_PORT_RANGE_TO', 31999, 1024, 65535),
    },
    capacity: {
      cpus: int('cpus', 'FLEDGE_CPUS', availableParallelism(), 0.01, 100_000),
      memoryMb: int('memoryMb', 'FLEDGE_MEMORY_MB', Math.floor(totalmem() / 1024 / 1024), 1, 1e9),
    },
    killGraceSeconds: int('killGraceSeconds', 'FLEDGE_KILL_GRACE_SECONDS', 10, 0, 3600),
    drainTimeoutSeconds: int('drainTimeoutSeconds', 'FLEDGE_DRAIN_TIMEOUT_SECONDS', 30, 0, 3600),
    allowCanaryLbChange: bool('allowCanaryLbChange', 'FLEDGE_ALLOW_CANARY_LB_CHANGE'),
    checkModules: (flags.checkModule ?? (env.FLEDGE_CHECK_MODULES ?? '').split(','))
      .map((p) => p.trim())
      .filter(Boolean)
      .map((p) => resolve(p)),
    logLevel: String(pick('logLevel', 'FLEDGE_LOG_LEVEL') ?? 'info'),
  };
  if (config.portRange.from > config.portRange.to) {
    throw new ConfigError(`Invalid port range: ${config.portRange.from} > ${config.portRange.to}`);
  }
  return config;
}
