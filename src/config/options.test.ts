import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig } from './index.ts';
import { ConfigError, readOptions, SERVER_OPTIONS } from './options.ts';
import { replaceOptionsTable } from './readme-table.ts';

describe('server options', () => {
  it('the README table is the option table (npm run docs:options rewrites it)', () => {
    const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
    expect(replaceOptionsTable(readme)).toBe(readme);
  });

  it('has one flag and one variable per option', () => {
    const flags = SERVER_OPTIONS.map((s) => s.flag);
    const envs = SERVER_OPTIONS.map((s) => s.env);
    expect(new Set(flags).size).toBe(flags.length);
    expect(new Set(envs).size).toBe(envs.length);
    for (const s of SERVER_OPTIONS) {
      expect(s.flag).toBe(`--${s.key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
      expect(s.env.startsWith('FLEDGE_')).toBe(true);
    }
  });

  it('flags win over variables, which win over defaults', () => {
    expect(loadConfig({}, {}).port).toBe(7099);
    expect(loadConfig({}, { FLEDGE_PORT: '8000' }).port).toBe(8000);
    expect(loadConfig({ port: 9000 }, { FLEDGE_PORT: '8000' }).port).toBe(9000);
    expect(loadConfig({}, { FLEDGE_CHECK_MODULES: 'a.mjs, b.mjs' }).checkModules.map((p) => p.split('/').pop())).toEqual([
      'a.mjs',
      'b.mjs',
    ]);
  });

  it.each([
    [{ port: 70000 }, {}, 'Invalid port (FLEDGE_PORT): 70000 is not an integer from 0 to 65535'],
    [{}, { FLEDGE_PORT: 'abc' }, 'Invalid port (FLEDGE_PORT): "abc" is not an integer'],
    [{}, { FLEDGE_LB: 'nginx' }, 'Invalid lb (FLEDGE_LB): "nginx" is not one of builtin, haproxy, none'],
    [{}, { FLEDGE_ALLOW_CANARY_LB_CHANGE: 'maybe' }, 'Invalid allow-canary-lb-change (FLEDGE_ALLOW_CANARY_LB_CHANGE)'],
    [{ portRangeFrom: 6000, portRangeTo: 5000 }, {}, 'Invalid port range: 6000 > 5000'],
    [{ lb: 'haproxy', haproxySocket: '/tmp/s' }, {}, 'Invalid haproxy-config'],
    [{ noAuth: true, host: '0.0.0.0' }, {}, 'Invalid no-auth (FLEDGE_NO_AUTH): the API would listen on 0.0.0.0'],
    [{}, { FLEDGE_NO_AUTH: 'true', FLEDGE_HOST: '192.168.1.5' }, 'Invalid no-auth (FLEDGE_NO_AUTH): the API would listen on 192.168.1.5'],
    [
      { allowedOrigin: ['https://ui.example.com/app'] },
      {},
      'Invalid allowed-origin (FLEDGE_ALLOWED_ORIGINS): "https://ui.example.com/app"',
    ],
    [{}, { FLEDGE_ALLOWED_ORIGINS: 'ui.example.com' }, 'Invalid allowed-origin'],
    [{ allowedHost: ['http://x'] }, {}, 'Invalid allowed-host (FLEDGE_ALLOWED_HOSTS)'],
    [{ publicUrl: 'ftp://x' }, {}, 'Invalid public-url (FLEDGE_PUBLIC_URL)'],
    [{ trustForwardedFrom: ['10.0.0.0/33'] }, {}, 'Invalid trust-forwarded-from (FLEDGE_TRUST_FORWARDED_FROM)'],
    [{ maxBodyBytes: 10 }, {}, 'Invalid max-body-bytes (FLEDGE_MAX_BODY_BYTES): 10 is not an integer from 1024'],
    [{ maxInstances: 0 }, {}, 'Invalid max-instances (FLEDGE_MAX_INSTANCES)'],
    [{ lbHeaderTimeoutSeconds: 60, lbRequestTimeoutSeconds: 30 }, {}, 'Invalid lb-header-timeout-seconds'],
    [{ lbKeepAliveTimeoutSeconds: 0 }, {}, 'Invalid lb-keep-alive-timeout-seconds'],
    [{}, { FLEDGE_STORE: 'postgres://u:secret@db:5432/f' }, 'Run HAProxy yourself and attach every scheduler'],
    [{ lb: 'haproxy' }, { FLEDGE_STORE: 'postgres://u:secret@db/f' }, 'Invalid haproxy-socket'],
    [{ store: 'mysql://x' }, {}, 'Invalid store (FLEDGE_STORE)'],
    [{ store: 'postgres://' }, {}, 'is not a valid postgres:// URL'],
    [{ leaseSeconds: 3, leaseRenewSeconds: 2 }, {}, 'at most a third of lease-seconds'],
    [{ advertiseUrl: 'fledge-1:7099' }, {}, 'Invalid advertise-url'],
    [{ prometheusUrl: 'prom:9090' }, {}, 'Invalid prometheus-url (FLEDGE_PROMETHEUS_URL): "prom:9090" is not an http(s) URL'],
    [{}, { FLEDGE_PROMETHEUS_ALLOW: '10.0.0.0/40' }, 'Invalid prometheus-allow (FLEDGE_PROMETHEUS_ALLOW): 10.0.0.0/40'],
  ])('refuses %j %j naming the option', (flags, env, message) => {
    expect(() => loadConfig(flags as never, env)).toThrow(ConfigError);
    expect(() => loadConfig(flags as never, env)).toThrow(message);
  });

  it('shapes the prometheus options: no server and nothing allowed by default', () => {
    expect(loadConfig({}, {}).prometheus).toEqual({ allow: [] });
    expect(
      loadConfig({}, { FLEDGE_PROMETHEUS_URL: 'http://127.0.0.1:9090/', FLEDGE_PROMETHEUS_ALLOW: '10.0.0.0/8,prom.internal' }).prometheus,
    ).toEqual({
      url: 'http://127.0.0.1:9090',
      allow: ['10.0.0.0/8', 'prom.internal'],
    });
  });

  it('is safe with nothing configured: auth on, LB on loopback, bounded bodies, instances and LB clients', () => {
    const c = loadConfig({}, {});
    expect(c.api).toEqual({ auth: true, allowedHosts: [], allowedOrigins: [], maxBodyBytes: 1024 * 1024, maxInstances: 1000 });
    expect(c.lbHost).toBe('127.0.0.1');
    expect(c.lbLimits).toEqual({
      maxConnections: 4096,
      maxHeaderBytes: 16384,
      headerTimeoutMs: 10_000,
      requestTimeoutMs: 300_000,
      keepAliveTimeoutMs: 5_000,
    });
    expect(c.trustForwardedFrom).toEqual([]);
  });

  it('shapes the security options', () => {
    const c = loadConfig(
      {
        noAuth: true,
        host: 'localhost',
        publicUrl: 'https://Fledge.Example.com/ops/',
        allowedHost: ['Fledge.Internal'],
        allowedOrigin: ['http://localhost:5173/'],
        trustForwardedFrom: ['10.0.0.0/8', '::1'],
        lbHost: '0.0.0.0',
      },
      {},
    );
    expect(c.api).toMatchObject({
      auth: false,
      publicUrl: 'https://fledge.example.com/ops',
      allowedHosts: ['fledge.internal'],
      allowedOrigins: ['http://localhost:5173'],
    });
    expect(c.trustForwardedFrom).toEqual(['10.0.0.0/8', '::1']);
    expect(c.lbHost).toBe('0.0.0.0');
    expect(c.host).toBe('localhost');
  });

  it('never puts a store password in an error', () => {
    expect(() => loadConfig({ store: 'postgres://u:hunter22@' }, {})).toThrow(/^(?!.*hunter22)/s);
    expect(() => loadConfig({}, { FLEDGE_STORE: 'postgres://u:hunter22@db/f' })).not.toThrow(/hunter22/);
  });

  it('reads the store: SQLite in the data dir by default, a file or dir, or PostgreSQL', () => {
    expect(loadConfig({ dataDir: '/tmp/x' }, {}).store).toEqual({ kind: 'sqlite', file: '/tmp/x/fledge.db' });
    expect(loadConfig({ store: 'sqlite:/tmp/y.db' }, {}).store).toEqual({ kind: 'sqlite', file: '/tmp/y.db' });
    expect(loadConfig({ store: 'sqlite:/tmp' }, {}).store).toEqual({ kind: 'sqlite', file: '/tmp/fledge.db' });
    const pgConfig = loadConfig(
      { lb: 'haproxy', haproxySocket: '/s', haproxyConfig: '/c' },
      { FLEDGE_STORE: 'postgres://u:p@db:5432/f', FLEDGE_LEASE_SECONDS: '6' },
    );
    expect(pgConfig.store).toEqual({ kind: 'postgres', url: 'postgres://u:p@db:5432/f' });
    expect(pgConfig.lease).toEqual({ termMs: 6000, renewMs: 2000 });
  });

  it('reads Docker hosts from repeated flags or the ;-separated variable', () => {
    const flags = loadConfig(
      {
        dockerHost: [
          'id=d1,endpoint=unix:///run/d1.sock,ports=32000-32099',
          'id=d2,endpoint=tcp://10.0.0.2:2376,attr.rack=r2,cpus=4,memory-mb=8192',
          'id=d3,endpoint=tcp://10.0.0.3:2376,rack=r3,attr.zone=a,reserved.gpu=yes',
        ] as never,
      },
      {},
    );
    expect(flags.dockerHosts).toEqual([
      {
        id: 'd1',
        kind: 'docker',
        endpoint: 'unix:///run/d1.sock',
        address: '127.0.0.1',
        portRange: { from: 32000, to: 32099 },
        capacity: {},
        attributes: {},
        reservedAttributes: {},
      },
      {
        id: 'd2',
        kind: 'docker',
        endpoint: 'tcp://10.0.0.2:2376',
        address: '10.0.0.2',
        portRange: { from: 31000, to: 31999 },
        capacity: { cpus: 4, memoryMb: 8192 },
        attributes: { rack: 'r2' },
        reservedAttributes: {},
      },
      {
        id: 'd3',
        kind: 'docker',
        endpoint: 'tcp://10.0.0.3:2376',
        address: '10.0.0.3',
        portRange: { from: 31000, to: 31999 },
        capacity: {},
        attributes: { rack: 'r3', zone: 'a', gpu: 'yes' },
        reservedAttributes: { gpu: 'yes' },
      },
    ]);
    const env = loadConfig(
      {},
      { FLEDGE_DOCKER_HOSTS: 'id=a,endpoint=unix:///a.sock,ports=33000-33010; id=b,endpoint=tcp://h:1,address=10.1.1.1' },
    );
    expect(env.dockerHosts.map((h) => [h.id, h.address])).toEqual([
      ['a', '127.0.0.1'],
      ['b', '10.1.1.1'],
    ]);
    expect(loadConfig({}, {}).dockerHosts).toEqual([]);
  });

  it.each([
    ['id=d1', 'Invalid docker-host (FLEDGE_DOCKER_HOSTS): host d1: endpoint=<unix:///path or tcp://addr:port> is required'],
    ['endpoint=unix:///x', 'Invalid docker-host (FLEDGE_DOCKER_HOSTS): id=<name> is required'],
    ['id=local,endpoint=unix:///x', '"local" is the process host\'s id'],
    ['id=d1,endpoint=http://x:1', 'host d1: endpoint must be unix:///path or tcp://addr:port (got http://x:1)'],
    ['id=d1,endpoint=unix:///x,port=1', 'unknown key "port"'],
    ['id=d1,endpoint=unix:///x,ports=9-8', 'host d1: ports must be <from>-<to> within 1024-65535 (got 9-8)'],
    ['id=d1,endpoint=unix:///x,cpus=0', 'host d1: cpus must be a number > 0 (got 0)'],
    [
      'id=d1,endpoint=unix:///x',
      'hosts local and d1 both answer on 127.0.0.1 and share ports 31000-31999: give d1 its own range (ports=<from>-<to>)',
    ],
    ['id=d1,endpoint=unix:///x,ports=32000-32010;id=d1,endpoint=unix:///y,ports=33000-33010', 'host d1 is given twice'],
    ['id=unplaced,endpoint=unix:///x,ports=32000-32010', 'host unplaced: "unplaced" names tasks no host took yet'],
    ['id=d1,endpoint=unix:///x,ports=32000-32010,rack=r 1', 'host d1: rack must be [A-Za-z0-9_.-] (got r 1)'],
    ['id=d1,endpoint=unix:///x,ports=32000-32010,rack=r1,attr.rack=r2', 'host d1: rack=r1 and attr.rack=r2 disagree'],
    ['id=d1,endpoint=unix:///x,ports=32000-32010,attr.gpu=no,reserved.gpu=yes', 'attribute "gpu" is given twice with different values'],
  ])('refuses the Docker host %j naming the option', (spec, message) => {
    expect(() => loadConfig({}, { FLEDGE_DOCKER_HOSTS: spec })).toThrow(ConfigError);
    expect(() => loadConfig({}, { FLEDGE_DOCKER_HOSTS: spec })).toThrow(message);
  });

  it('refuses a key that is no option', () => {
    expect(() => readOptions({ prot: 1 }, {})).toThrow('Unknown option: prot');
  });
});
