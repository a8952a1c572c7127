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
  ])('refuses %j %j naming the option', (flags, env, message) => {
    expect(() => loadConfig(flags as never, env)).toThrow(ConfigError);
    expect(() => loadConfig(flags as never, env)).toThrow(message);
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

  it('refuses a key that is no option', () => {
    expect(() => readOptions({ prot: 1 }, {})).toThrow('Unknown option: prot');
  });
});
