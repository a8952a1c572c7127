import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestWithDeploy, startCliApp, uniqueId, type CliApp } from '../../test/helpers/cli-app.ts';
import { freePort } from '../../test/helpers/ports.ts';
import { FledgeApiError, FledgeClient, SseParser, type ClientOptions, type FledgeStreamEvent } from '../api/client.ts';
import { nodeTransport } from './http.ts';

let app: CliApp;
beforeAll(async () => {
  app = await startCliApp();
});
afterAll(async () => app?.close());

describe('SseParser', () => {
  it('parses events split anywhere across chunks, with CRLF and multi-line data', () => {
    const events: FledgeStreamEvent[] = [];
    const parser = new SseParser((e) => events.push(e));
    const text = ': comment\r\nevent: deploy\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: ping\ndata: {}\n\nid: 7\ndata: plain text\n\n';
    for (const ch of text) parser.push(ch);
    parser.end();
    expect(events).toEqual([
      { event: 'deploy', data: { a: 1 } },
      { event: 'ping', data: {} },
      { event: 'message', data: 'plain text', id: '7' },
    ]);
  });

  it('ignores an event with no data and dispatches a final unterminated one at end', () => {
    const events: FledgeStreamEvent[] = [];
    const parser = new SseParser((e) => events.push(e));
    parser.push('event: lonely\n\nevent: task\ndata: {"x":2}');
    parser.end();
    expect(events).toEqual([{ event: 'task', data: { x: 2 } }]);
  });
});

// Both transports: Node's fetch (the default, and the UI's) and the CLI's node:http one.
describe.each([
  ['fetch', {}],
  ['node:http', { transport: nodeTransport }],
] as [string, ClientOptions][])('FledgeClient over %s, against the real server', (_name, transport) => {
  it('turns a JSON error body into FledgeApiError with status and details', async () => {
    const id = uniqueId('web');
    await app.api('POST', '/api/requests', { id, requestType: 'SERVICE', instances: 3 });
    const err = await new FledgeClient(app.url, { ...transport, token: app.adminToken }).scale(id, 3).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FledgeApiError);
    expect(err).toMatchObject({
      status: 400,
      message: `instances: request ${id} already has 3 instance(s)`,
      details: [{ field: 'instances', rule: 'must change' }],
    });
  });

  it('reports a non-JSON error with the status line', async () => {
    // A proxy's error page cannot be asked of the real API: a server that answers only that.
    const gateway = createServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('bad gateway');
    });
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = gateway.address() as { port: number };
      await expect(new FledgeClient(`http://127.0.0.1:${port}/`, transport).state()).rejects.toMatchObject({
        status: 502,
        message: 'GET /api/state: HTTP 502 Bad Gateway: bad gateway',
      });
    } finally {
      await new Promise<void>((resolve) => gateway.close(() => resolve()));
    }
  });

  it('builds the sandbox query and delivers stream events until aborted', async () => {
    const id = uniqueId('logs');
    await requestWithDeploy(app, id, { request: { instances: 1 } });
    const client = new FledgeClient(app.url, { ...transport, token: app.adminToken });
    const [task] = await client.requestTasks(id);
    const taskId = task!.taskId.id;
    app.runtime.writeLog(taskId, 'stderr', 'hello, stderr\n');
    const chunk = await client.readLogs(taskId, 'stderr', 5, 100);
    expect(chunk).toMatchObject({ offset: 5, data: ', stderr\n', nextOffset: 14 });
    expect(app.calls.at(-1)).toMatchObject({
      path: `/api/sandbox/${encodeURIComponent(taskId)}/read`,
      query: { path: 'stderr', offset: '5', length: '100' },
    });

    const seen: FledgeStreamEvent[] = [];
    const stop = new AbortController();
    const before = app.calls.filter((c) => c.path === '/api/events').length;
    const done = client.events((e) => {
      seen.push(e);
      if (e.event === 'task') stop.abort();
    }, stop.signal);
    await app.subscribed(before + 1);
    // a real change the server streams: a task killed
    await app.api('DELETE', `/api/tasks/task/${encodeURIComponent(taskId)}`, {});
    await done;
    expect(seen[0]?.event).toBe('hello');
    expect(seen.at(-1)?.event).toBe('task');
    expect(app.calls.filter((c) => c.path === '/api/events').at(-1)?.headers.authorization).toBe(`Bearer ${app.adminToken}`);
  });
});

describe('the node:http transport', () => {
  it('says why it cannot connect, as fetch does', async () => {
    const port = await freePort();
    const err = await new FledgeClient(`http://127.0.0.1:${port}`, { transport: nodeTransport }).state().catch((e: unknown) => e);
    expect(err).toMatchObject({ message: `cannot reach Fledge at http://127.0.0.1:${port}: connect ECONNREFUSED` });
  });
});
