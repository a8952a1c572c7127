import { afterEach, describe, expect, it } from 'vitest';
import { FledgeApiError, FledgeClient, SseParser, type FledgeStreamEvent } from '../api/client.ts';
import { reply, startFake, type FakeFledge } from './fake-server.ts';

let fake: FakeFledge;
afterEach(async () => fake?.close());

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

describe('FledgeClient', () => {
  it('turns a JSON error body into FledgeApiError with status and details', async () => {
    fake = await startFake({
      'POST /api/deploys/update': () =>
        reply(400, { message: 'targetActiveInstances: must be from 1 to 3', details: [{ field: 'targetActiveInstances', rule: '1…3' }] }),
    });
    const err = await new FledgeClient(fake.url).updateDeploy('web', 'd2', 9).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FledgeApiError);
    expect(err).toMatchObject({
      status: 400,
      message: 'targetActiveInstances: must be from 1 to 3',
      details: [{ field: 'targetActiveInstances', rule: '1…3' }],
    });
  });

  it('reports a non-JSON error with the status line', async () => {
    fake = await startFake({ 'GET /api/state': () => reply(502, 'bad gateway') });
    await expect(new FledgeClient(`${fake.url}/`).state()).rejects.toMatchObject({
      status: 502,
      message: 'GET /api/state: HTTP 502 Bad Gateway: "bad gateway"',
    });
  });

  it('builds the sandbox query and delivers stream events until aborted', async () => {
    fake = await startFake({
      'GET /api/sandbox/t%201/read': (c) => ({ path: c.query.path, offset: 5, data: '', nextOffset: 5, q: c.query }),
    });
    const client = new FledgeClient(fake.url, { token: 't' });
    expect(await client.readLogs('t 1', 'stderr', 5, 100)).toMatchObject({ q: { path: 'stderr', offset: '5', length: '100' } });

    const seen: FledgeStreamEvent[] = [];
    const stop = new AbortController();
    const done = client.events((e) => {
      seen.push(e);
      if (e.event === 'task') stop.abort();
    }, stop.signal);
    await fake.subscribed();
    fake.send('task', { type: 'TASK' });
    await done;
    expect(seen.map((e) => e.event)).toEqual(['hello', 'task']);
    expect(fake.calls.at(-1)?.headers.authorization).toBe('Bearer t');
  });
});
