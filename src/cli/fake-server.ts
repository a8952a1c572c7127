// Test double for the Fledge API: records every call, answers from per-route handlers and
// lets a test push server-sent events. Used by the CLI tests only.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CliIo } from './context.ts';

export interface RecordedCall {
  method: string;
  path: string;
  query: Record<string, string>;
  body: unknown;
  headers: IncomingMessage['headers'];
}

export type Reply = { status?: number; body?: unknown };
/** Keyed "METHOD /path" (query excluded). */
export type Routes = Record<string, (call: RecordedCall) => Reply | unknown>;

export interface FakeFledge {
  url: string;
  calls: RecordedCall[];
  /** calls other than the event stream, as "METHOD /path" */
  paths(): string[];
  route(key: string, handler: (call: RecordedCall) => Reply | unknown): void;
  /** resolves once `n` event-stream clients have connected in total */
  subscribed(n?: number): Promise<void>;
  send(event: string, data: unknown): void;
  /** ends every open event stream, as a restarting server would */
  dropStreams(): void;
  close(): Promise<void>;
}

/** A reply with a status; anything else a handler returns is a 200 JSON body. */
export const reply = (status: number, body: unknown): Reply & { __reply: true } => ({ status, body, __reply: true });

export async function startFake(routes: Routes = {}): Promise<FakeFledge> {
  const table = new Map(Object.entries(routes));
  const calls: RecordedCall[] = [];
  const streams = new Set<ServerResponse>();
  let connections = 0;
  const waiters: { n: number; resolve: () => void }[] = [];

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const text = Buffer.concat(chunks).toString('utf8');
      const call: RecordedCall = {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        body: text === '' ? undefined : (JSON.parse(text) as unknown),
        headers: req.headers,
      };
      calls.push(call);
      if (call.method === 'GET' && call.path === '/api/events') {
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
        res.write(`event: hello\ndata: {"at":0}\n\n`);
        streams.add(res);
        res.on('close', () => streams.delete(res));
        connections += 1;
        for (const w of waiters.filter((w) => connections >= w.n)) w.resolve();
        return;
      }
      const handler = table.get(`${call.method} ${call.path}`);
      let status = 200;
      let body: unknown;
      if (!handler) {
        status = 404;
        body = { message: `fake: no route for ${call.method} ${call.path}`, details: [] };
      } else {
        const out = handler(call);
        if (out && typeof out === 'object' && '__reply' in out) {
          status = (out as Reply).status ?? 200;
          body = (out as Reply).body;
        } else body = out;
      }
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(body === undefined ? '' : JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    paths: () => calls.filter((c) => c.path !== '/api/events').map((c) => `${c.method} ${c.path}`),
    route: (key, handler) => void table.set(key, handler),
    subscribed: (n = 1) => new Promise<void>((resolve) => (connections >= n ? resolve() : waiters.push({ n, resolve }))),
    send(event, data) {
      for (const res of streams) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    dropStreams() {
      for (const res of streams) res.end();
    },
    async close() {
      if (!server.listening) return;
      for (const res of streams) res.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

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
