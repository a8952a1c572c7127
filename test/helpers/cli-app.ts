// The real Fledge server for the CLI's in-process tests: startServer() on a memory store with
// the fake runtime, balancer, health and checks (--allow-fakes; real processes are not what
// these tests are about), reached through a recording pass-through so a test can also say which
// calls the CLI made (or that it made none). Every answer is the real API's.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CliIo } from '../../src/cli/context.ts';
import { runCli } from '../../src/cli/main.ts';
import { loadConfig } from '../../src/config/index.ts';
import { silentLogger } from '../../src/logger.ts';
import type { FakeRuntime } from '../../src/runtimes/fake/index.ts';
import { startServer, type FledgeServer } from '../../src/server.ts';
import { waitFor } from './wait-for.ts';

export interface RecordedCall {
  method: string;
  path: string;
  query: Record<string, string>;
  body: unknown;
  headers: IncomingMessage['headers'];
}

export interface CliApp {
  /** the recording pass-through the CLI is pointed at */
  url: string;
  dataDir: string;
  server: FledgeServer;
  /** the local host's fake runtime: scripts failures, writes task logs */
  runtime: FakeRuntime;
  adminToken: string;
  /** every call through `url`, in order */
  calls: RecordedCall[];
  /** calls other than the event stream, as "METHOD /path" */
  paths(): string[];
  /** resolves once `n` event-stream clients have connected through `url` in total */
  subscribed(n?: number): Promise<void>;
  /** cuts every open event stream, as a dropped connection would */
  dropStreams(): void;
  /** a call straight to the server (not recorded) as admin; throws unless 2xx */
  api<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T>;
  close(): Promise<void>;
}

/** `flags`: more `fledge serve` options (src/config/options.ts keys), e.g. a Docker host. */
export async function startCliApp(flags: Record<string, unknown> = {}): Promise<CliApp> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fledge-cli-app-'));
  const config = loadConfig(
    {
      dataDir,
      port: 0,
      runtime: 'fake',
      lb: 'fake',
      health: 'fake',
      checks: 'fake',
      store: 'memory',
      allowFakes: true,
      logLevel: 'silent',
      ...flags,
    },
    {},
  );
  const server = await startServer(config, { logger: silentLogger });
  const runtime = server.hosts.entries().find((e) => e.definition.id === 'local')!.runtime as FakeRuntime;
  const target = new URL(server.url);
  const calls: RecordedCall[] = [];
  const streams = new Set<ServerResponse>();
  let connections = 0;
  const waiters: { n: number; resolve: () => void }[] = [];

  const proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://recorder');
      const raw = Buffer.concat(chunks);
      const text = raw.toString('utf8');
      let body: unknown = text === '' ? undefined : text;
      try {
        if (text !== '') body = JSON.parse(text);
      } catch {
        // not JSON: kept as text
      }
      calls.push({
        method: req.method ?? 'GET',
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        body,
        headers: req.headers,
      });
      const upstream = httpRequest(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          if (url.pathname === '/api/events' && answer.statusCode === 200) {
            streams.add(res);
            res.on('close', () => {
              streams.delete(res);
              answer.destroy();
            });
            connections += 1;
            for (const w of waiters.filter((w) => connections >= w.n)) w.resolve();
          }
        },
      );
      upstream.on('error', (err) => res.destroy(err));
      upstream.end(raw);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as AddressInfo;
  const adminToken = server.adminToken!;

  return {
    url: `http://127.0.0.1:${port}`,
    dataDir,
    server,
    runtime,
    adminToken,
    calls,
    paths: () => calls.filter((c) => c.path !== '/api/events').map((c) => `${c.method} ${c.path}`),
    subscribed: (n = 1) => new Promise<void>((resolve) => (connections >= n ? resolve() : waiters.push({ n, resolve }))),
    dropStreams() {
      for (const res of streams) res.destroy();
    },
    async api<T>(method: string, path: string, body?: unknown): Promise<T> {
      const res = await fetch(`${server.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return (text === '' ? undefined : JSON.parse(text)) as T;
    },
    async close() {
      for (const res of streams) res.destroy();
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

let counter = 0;
/** A fresh id per test, so tests sharing one server never see each other's requests. */
export function uniqueId(prefix: string): string {
  counter += 1;
  return `${prefix}${counter}`;
}

/** A SERVICE request as the API takes it. */
export function requestBody(id: string, more: Record<string, unknown> = {}) {
  return { id, requestType: 'SERVICE', instances: 3, ...more };
}

/** A deploy for the fake runtime: nothing runs its command. */
export function deployOf(requestId: string, id: string, more: Record<string, unknown> = {}) {
  return { requestId, id, command: 'nothing runs this', resources: { cpus: 0.01, memoryMb: 1, numPorts: 1 }, ...more };
}

export const manualCanary = (instanceGroupSize = 1) => ({
  canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize, acceptanceMode: 'MANUAL' },
});

interface Parent {
  activeDeploy?: { id: string };
  pendingDeploy?: { id: string };
  pendingDeployState?: { deployProgress?: { phase: string; step: number } };
}

/** Waits until `deployId` is the request's active deploy and nothing is pending. */
export async function deployed(app: CliApp, requestId: string, deployId: string): Promise<void> {
  await waitFor(
    async () => {
      const p = await app.api<Parent>('GET', `/api/requests/request/${encodeURIComponent(requestId)}`);
      return p.activeDeploy?.id === deployId && !p.pendingDeploy;
    },
    { timeoutMs: 20_000, message: `${requestId}: ${deployId} active` },
  );
}

/** Creates a request and runs its first deploy to the end. */
export async function requestWithDeploy(
  app: CliApp,
  requestId: string,
  options: { request?: Record<string, unknown>; deploy?: Record<string, unknown>; deployId?: string } = {},
): Promise<void> {
  await app.api('POST', '/api/requests', requestBody(requestId, options.request));
  const deployId = options.deployId ?? 'd1';
  await app.api('POST', '/api/deploys', { deploy: deployOf(requestId, deployId, options.deploy) });
  await deployed(app, requestId, deployId);
}

/** Waits until the pending deploy of `requestId` is in `phase` of `step`. */
export async function pendingAt(app: CliApp, requestId: string, phase: string, step = 1): Promise<void> {
  await waitFor(
    async () => {
      const p = (await app.api<Parent>('GET', `/api/requests/request/${encodeURIComponent(requestId)}`)).pendingDeployState?.deployProgress;
      return p?.phase === phase && p.step === step;
    },
    { timeoutMs: 20_000, message: `${requestId}: pending deploy at step ${step} ${phase}` },
  );
}

/** UTC, as the CLI prints times (format.ts). */
export const utc = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

export interface CapturedIo extends CliIo {
  out: () => string;
  err: () => string;
  /** resolves when stdout contains `text` */
  printed(text: string): Promise<void>;
}

/** In-memory writers for runCli, plus a way to wait for output without sleeping. */
export function captureIo(extra: Partial<CliIo> = {}): CapturedIo {
  let out = '';
  let err = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  return {
    env: {},
    // no ./.fledge/admin.token of whoever runs the tests
    cwd: '/nonexistent/fledge-cli-test',
    pollMillis: 1,
    reconnectMillis: 1,
    ...extra,
    stdout(s) {
      out += s;
      for (const w of waiters.filter((w) => out.includes(w.text))) w.resolve();
    },
    stderr(s) {
      err += s;
    },
    out: () => out,
    err: () => err,
    printed: (text) => new Promise<void>((resolve) => (out.includes(text) ? resolve() : waiters.push({ text, resolve }))),
  };
}

/**
 * The CLI run against a test file's app with its admin token: `io()` writers, `run(args)` its
 * exit code and output, `since()` the calls made from then on.
 */
export function cliRunner(app: () => CliApp) {
  const io = (extra: Partial<CliIo> = {}) => captureIo({ env: { FLEDGE_TOKEN: app().adminToken }, ...extra });
  const run = (args: string[], out = io()) => runCli(['--server', app().url, ...args], out).then((code) => ({ code, io: out }));
  const since = () => {
    const from = app().calls.length;
    const calls = () => app().calls.slice(from);
    return {
      calls,
      mutations: () => calls().filter((c) => c.method !== 'GET'),
      paths: () =>
        app()
          .paths()
          .slice(app().paths().length - calls().length),
    };
  };
  return { io, run, since };
}
