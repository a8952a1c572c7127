// The builtin balancer as an HTTP reverse proxy, against real upstream servers on 127.0.0.1.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { refusedPort, request, settled, startFaultyUpstream, startUpstream, waitFor, type TestUpstream } from '../test-support.ts';
import type { LbService, Upstream, UpstreamEvent } from '../types.ts';
import { createBuiltinBalancer, type BuiltinBalancer, type BuiltinBalancerOptions } from './index.ts';

const web: LbService = { serviceId: 'web', basePath: '/web', groups: [] };

describe('builtin balancer proxy', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function balancer(options: BuiltinBalancerOptions = {}): Promise<{ lb: BuiltinBalancer; port: number }> {
    const lb = await createBuiltinBalancer({ port: 0, ...options });
    cleanups.push(() => lb.close());
    return { lb, port: lb.address().port };
  }

  async function upstream(name: string): Promise<TestUpstream> {
    const server = await startUpstream(name);
    cleanups.push(() => server.close());
    return server;
  }

  function keepAliveAgent(maxSockets: number): { agent: http.Agent; sockets: () => number } {
    const agent = new http.Agent({ keepAlive: true, maxSockets });
    let sockets = 0;
    const create = agent.createConnection.bind(agent);
    agent.createConnection = (...args: Parameters<typeof create>) => {
      sockets += 1;
      return create(...args);
    };
    cleanups.push(() => agent.destroy());
    return { agent, sockets: () => sockets };
  }

  let opSeq = 0;
  async function apply(lb: BuiltinBalancer, service: LbService, add: Upstream[], remove: Upstream[] = []) {
    opSeq += 1;
    const id = `op-${opSeq}`;
    const status = await lb.apply(id, service, add, remove);
    return { id, status };
  }

  it('routes by the longest base path on segment boundaries and forwards the path unchanged', async () => {
    const { lb, port } = await balancer();
    const api = await upstream('api');
    const v2 = await upstream('v2');
    await apply(lb, { serviceId: 'api', basePath: '/api', groups: [] }, [api.upstream()]);
    await apply(lb, { serviceId: 'v2', basePath: '/api/v2/', groups: [] }, [v2.upstream()]);

    expect((await request(port, '/api')).body).toBe('api');
    expect((await request(port, '/api/x')).body).toBe('api');
    expect((await request(port, '/api/v2x')).body).toBe('api');
    expect((await request(port, '/api/v2')).body).toBe('v2');
    expect((await request(port, '/api/v2/users?q=1&r=/x')).body).toBe('v2');
    expect(v2.received.map((r) => r.url)).toEqual(['/api/v2', '/api/v2/users?q=1&r=/x']);

    const none = await request(port, '/apix');
    expect(none.status).toBe(503);
    expect(JSON.parse(none.body)).toMatchObject({ error: expect.stringMatching(/no service/), path: '/apix' });
  });

  it('round-robins across the upstreams in rotation and counts their requests', async () => {
    const { lb, port } = await balancer();
    const a = await upstream('a');
    const b = await upstream('b');
    await apply(lb, web, [a.upstream(), b.upstream()]);

    const bodies: string[] = [];
    for (let i = 0; i < 10; i += 1) bodies.push((await request(port, '/web/x')).body);
    expect(bodies.filter((x) => x === 'a')).toHaveLength(5);
    expect(bodies.filter((x) => x === 'b')).toHaveLength(5);
    for (let i = 1; i < bodies.length; i += 1) expect(bodies[i]).not.toBe(bodies[i - 1]);

    const stats = lb.stats().web;
    expect(stats?.upstreams.map((u) => [u.taskId, u.total, u.inFlight])).toEqual([
      ['a', 5, 0],
      ['b', 5, 0],
    ]);
  });

  it('answers 503 at once, saying why, for a service with no upstream in rotation and for an unknown path', async () => {
    const { lb, port } = await balancer();
    await apply(lb, web, []);
    const started = Date.now();
    const empty = await request(port, '/web/x', { timeoutMs: 1_000 });
    const unknown = await request(port, '/nowhere', { method: 'POST', body: 'ignored', timeoutMs: 1_000 });
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(empty.status).toBe(503);
    expect(JSON.parse(empty.body)).toEqual({ error: 'service has no upstream in rotation', service: 'web' });
    expect(unknown.status).toBe(503);
    expect(JSON.parse(unknown.body)).toEqual({ error: 'no service is routed at this path', path: '/nowhere' });
  });

  it('sets X-Forwarded-For/Host/Proto itself, dropping what an untrusted client claims', async () => {
    const { lb, port } = await balancer();
    const a = await upstream('a');
    await apply(lb, web, [a.upstream()]);
    await request(port, '/web/one', { headers: { host: 'shop.example' } });
    await request(port, '/web/two', {
      headers: {
        'x-forwarded-for': '203.0.113.9',
        'x-forwarded-host': 'bank.example',
        'x-forwarded-proto': 'https',
        'x-real-ip': '203.0.113.9',
        forwarded: 'for=203.0.113.9',
      },
    });
    expect(a.received[0]?.headers).toMatchObject({
      host: 'shop.example',
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-host': 'shop.example',
      'x-forwarded-proto': 'http',
    });
    expect(a.received[1]?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(a.received[1]?.headers['x-forwarded-host']).toBe(`127.0.0.1:${port}`);
    expect(a.received[1]?.headers['x-forwarded-proto']).toBe('http');
    expect(a.received[1]?.headers['x-real-ip']).toBeUndefined();
    expect(a.received[1]?.headers.forwarded).toBeUndefined();
  });

  it('appends to the forwarded-for chain of a --trust-forwarded-from proxy and keeps its host and scheme', async () => {
    const { lb, port } = await balancer({ trustForwardedFrom: ['127.0.0.0/8'] });
    const a = await upstream('a');
    await apply(lb, web, [a.upstream()]);
    await request(port, '/web/two', {
      headers: { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-host': 'shop.example', 'x-forwarded-proto': 'https' },
    });
    expect(a.received[0]?.headers).toMatchObject({
      'x-forwarded-for': '203.0.113.9, 127.0.0.1',
      'x-forwarded-host': 'shop.example',
      'x-forwarded-proto': 'https',
    });
  });

  it('drains a removed upstream: new requests go elsewhere at once, the in-flight one completes, then SUCCESS', async () => {
    const { lb, port } = await balancer();
    const a = await upstream('a');
    const b = await upstream('b');
    await apply(lb, web, [a.upstream()]);
    const slow = request(port, '/web/slow');
    await waitFor(() => a.held() === 1, 'the slow request to reach a');
    await apply(lb, web, [b.upstream()]);

    const removal = await apply(lb, web, [], [a.upstream()]);
    expect(removal.status.state).toBe('WAITING');
    expect((await lb.upstreams('web')).map((u) => u.taskId)).toEqual(['b']);
    for (let i = 0; i < 5; i += 1) expect((await request(port, '/web/x')).body).toBe('b');
    expect(a.received).toHaveLength(1);
    expect((await lb.state(removal.id))?.state).toBe('WAITING');
    expect(lb.stats().web?.upstreams.find((u) => u.taskId === 'a')).toMatchObject({ inRotation: false, inFlight: 1 });

    a.release();
    const response = await slow;
    expect(response).toMatchObject({ status: 200, body: 'a' });
    expect(await settled(lb, removal.id)).toMatchObject({ state: 'SUCCESS' });
    expect(lb.stats().web?.upstreams.map((u) => u.taskId)).toEqual(['b']);
  });

  it('cuts requests still in flight when the drain times out, and still reports SUCCESS', async () => {
    const { lb, port } = await balancer({ drainTimeoutMs: 150 });
    const a = await upstream('a');
    await apply(lb, web, [a.upstream()]);
    const stuck = request(port, '/web/slow');
    await waitFor(() => a.held() === 1, 'the stuck request to reach a');

    const removal = await apply(lb, web, [], [a.upstream()]);
    expect(removal.status.state).toBe('WAITING');
    expect(await settled(lb, removal.id)).toMatchObject({ state: 'SUCCESS', message: expect.stringMatching(/drain timed out/) });
    const response = await stuck;
    expect(response.status).toBe(502);
    await waitFor(() => a.held() === 0, 'the upstream to see its request cut');
    expect(lb.stats().web?.upstreams).toEqual([]);
  });

  it('puts a draining upstream back into rotation when the removal is canceled', async () => {
    const { lb, port } = await balancer();
    const a = await upstream('a');
    await apply(lb, web, [a.upstream()]);
    const slow = request(port, '/web/slow');
    await waitFor(() => a.held() === 1, 'the slow request to reach a');
    const removal = await apply(lb, web, [], [a.upstream()]);
    expect((await request(port, '/web/x')).status).toBe(503);

    expect((await lb.cancel(removal.id))?.state).toBe('CANCELED');
    expect((await request(port, '/web/x')).body).toBe('a');
    a.release();
    expect((await slow).status).toBe(200);
    expect((await lb.state(removal.id))?.state).toBe('CANCELED');
  });

  it('ends a removal CANCELED when a later operation adds the draining upstream back (it is in rotation again)', async () => {
    const { lb, port } = await balancer();
    const a = await upstream('a');
    await apply(lb, web, [a.upstream()]);
    const slow = request(port, '/web/slow');
    await waitFor(() => a.held() === 1, 'the slow request to reach a');
    const removal = await apply(lb, web, [], [a.upstream()]);
    const readd = await apply(lb, web, [a.upstream()]);

    expect(readd.status.state).toBe('SUCCESS');
    expect(await lb.state(removal.id)).toMatchObject({ state: 'CANCELED', message: expect.stringMatching(/added back/) });
    expect((await request(port, '/web/x')).body).toBe('a');
    a.release();
    expect((await slow).status).toBe(200);
  });

  it('never sends a keep-alive client to an upstream after its removal started', async () => {
    const { lb, port } = await balancer();
    const a = await upstream('a');
    const b = await upstream('b');
    await apply(lb, web, [a.upstream(), b.upstream()]);
    const { agent, sockets } = keepAliveAgent(1);

    for (let i = 0; i < 4; i += 1) await request(port, '/web/before', { agent });
    expect(a.received.length).toBeGreaterThan(0);
    // Hold a request on a (over another connection) so the removal stays in its draining phase.
    const slow = request(port, '/web/slow');
    await waitFor(() => a.held() + b.held() === 1, 'the slow request to arrive');
    const drained = a.held() === 1 ? a : b;
    const kept = drained === a ? b : a;
    const removal = await apply(lb, web, [], [drained.upstream()]);
    expect(removal.status.state).toBe('WAITING');
    const seenBefore = drained.received.length;

    for (let i = 0; i < 10; i += 1) expect((await request(port, '/web/after', { agent })).body).toBe(kept.name);
    expect(drained.received.length).toBe(seenBefore);
    expect(sockets()).toBe(1);

    drained.release();
    await slow;
    expect((await settled(lb, removal.id)).state).toBe('SUCCESS');
  });

  it('retries a request on another upstream when one refuses connections', async () => {
    const { lb, port } = await balancer();
    const a = await upstream('a');
    const refused: Upstream = { taskId: 'refused', host: '127.0.0.1', port: await refusedPort() };
    await apply(lb, web, [refused, a.upstream()]);

    for (let i = 0; i < 10; i += 1) expect(await request(port, '/web/x')).toMatchObject({ status: 200, body: 'a' });
    // Nothing of a body is sent before the connection stands, so even a POST moves over intact.
    const post = await request(port, '/web/form', { method: 'POST', body: 'x'.repeat(10_000) });
    expect(post.status).toBe(200);
    expect(a.received.at(-1)?.body).toBe('x'.repeat(10_000));
    expect(lb.stats().web?.upstreams.find((u) => u.taskId === 'refused')?.inFlight).toBe(0);
  });

  it('moves a request past every task of a dead host: all of them refuse, the one live task answers', async () => {
    // No ejection: each request meets the refusing tasks afresh, in round-robin order.
    const { lb, port } = await balancer({ ejectAfterFailures: 0 });
    const a = await upstream('a');
    const dead = await Promise.all(
      ['d1', 'd2', 'd3'].map(async (taskId): Promise<Upstream> => ({ taskId, host: '127.0.0.1', port: await refusedPort() })),
    );
    await apply(lb, web, [...dead, a.upstream()]);
    for (let i = 0; i < 8; i += 1) expect(await request(port, '/web/x')).toMatchObject({ status: 200, body: 'a' });
    const post = await request(port, '/web/form', { method: 'POST', body: 'intact' });
    expect(post.status).toBe(200);
    expect(a.received.at(-1)?.body).toBe('intact');
  });

  it('repeats an idempotent request one upstream reset once, and still past the refusals after it', async () => {
    const { lb, port } = await balancer({ ejectAfterFailures: 0 });
    const a = await upstream('a');
    const reset = await startFaultyUpstream('reset', 'reset');
    cleanups.push(() => reset.close());
    const second = await startFaultyUpstream('reset2', 'reset');
    cleanups.push(() => second.close());
    const refused: Upstream = { taskId: 'refused', host: '127.0.0.1', port: await refusedPort() };
    await apply(lb, web, [reset.upstream(), refused, a.upstream()]);
    for (let i = 0; i < 6; i += 1) expect(await request(port, '/web/x')).toMatchObject({ status: 200, body: 'a' });

    // Upstreams that may have seen it and failed: the second one ends it (it is repeated once only).
    const third = await startFaultyUpstream('reset3', 'reset');
    cleanups.push(() => third.close());
    await apply(lb, web, [second.upstream(), third.upstream()], [refused, a.upstream()]);
    const before = reset.hits() + second.hits() + third.hits();
    for (let i = 0; i < 3; i += 1) expect((await request(port, '/web/x')).status).toBe(502);
    expect(reset.hits() + second.hits() + third.hits() - before).toBe(6);
  });

  describe('passive protection', () => {
    async function faulty(name: string, behaviour: 'reset' | 'hang') {
      const server = await startFaultyUpstream(name, behaviour);
      cleanups.push(() => server.close());
      return server;
    }
    function listen(lb: BuiltinBalancer): UpstreamEvent[] {
      const events: UpstreamEvent[] = [];
      cleanups.push(lb.onUpstreamEvent((e) => events.push(e)));
      return events;
    }

    it('skips an upstream that reset 3 times in a row for its back-off: nothing reaches it, every client is answered', async () => {
      const { lb, port } = await balancer({ ejectAfterFailures: 3, ejectBaseMs: 60_000, ejectMaxMs: 60_000 });
      const events = listen(lb);
      const a = await upstream('a');
      const bad = await faulty('bad', 'reset');
      await apply(lb, web, [bad.upstream(), a.upstream()]);
      for (let i = 0; i < 20; i++) expect(await request(port, '/web/x')).toMatchObject({ status: 200, body: 'a' });
      expect(bad.hits()).toBe(3);
      expect(events).toMatchObject([{ kind: 'EJECTED', serviceId: 'web', taskId: 'bad', failures: 3, reason: 'reset', backoffMs: 60_000 }]);
      expect(lb.stats().web?.upstreams.find((u) => u.taskId === 'bad')?.ejectedUntil).toBe(events[0]?.until);
      // Still a member: out of rotation is not out of the service (that is the engine's call).
      expect((await lb.upstreams('web')).map((u) => u.taskId).sort()).toEqual(['a', 'bad']);
    });

    it('puts it back after the back-off, half-open: one more failure and it is out again for twice as long', async () => {
      const { lb, port } = await balancer({ ejectAfterFailures: 2, ejectBaseMs: 200 });
      const events = listen(lb);
      const a = await upstream('a');
      const bad = await faulty('bad', 'reset');
      await apply(lb, web, [bad.upstream(), a.upstream()]);
      for (let i = 0; i < 6; i++) await request(port, '/web/x');
      await waitFor(() => events.some((e) => e.kind === 'RESTORED'), 'RESTORED', { timeoutMs: 5_000 });
      await waitFor(
        async () => {
          await request(port, '/web/x');
          return events.filter((e) => e.kind === 'EJECTED').length === 2;
        },
        'a second ejection',
        { timeoutMs: 5_000 },
      );
      expect(events.filter((e) => e.kind === 'EJECTED').map((e) => e.backoffMs)).toEqual([200, 400]);
      expect(events.at(-1)).toMatchObject({ kind: 'EJECTED', failures: 2 });
    });

    it('a success ends a run of failures', async () => {
      const { lb, port } = await balancer({ ejectAfterFailures: 3 });
      const events = listen(lb);
      let n = 0;
      const flaky = http.createServer((req, res) => {
        n += 1;
        req.resume();
        if (n % 3 === 0) res.end('flaky');
        else req.socket.destroy();
      });
      await new Promise<void>((resolve) => flaky.listen(0, '127.0.0.1', resolve));
      cleanups.push(() => new Promise<void>((resolve) => flaky.close(() => resolve())));
      await apply(lb, web, [{ taskId: 'flaky', host: '127.0.0.1', port: (flaky.address() as AddressInfo).port }]);
      // Two resets (the second try goes nowhere: there is no other upstream), then an answer, over and over.
      for (let i = 0; i < 9; i++) await request(port, '/web/x', { method: 'POST', body: 'x' });
      expect(events).toEqual([]);
    });

    it('uses upstreams out of rotation when every one is: one that may answer beats a certain 503', async () => {
      const { lb, port } = await balancer({ ejectAfterFailures: 1, ejectBaseMs: 60_000 });
      const events = listen(lb);
      const bad = await faulty('bad', 'reset');
      await apply(lb, web, [bad.upstream()]);
      expect((await request(port, '/web/x')).status).toBe(502);
      expect(events.map((e) => e.kind)).toEqual(['EJECTED']);
      bad.heal();
      expect(await request(port, '/web/x')).toMatchObject({ status: 200, body: 'bad' });
    });

    it('with ejectAfterFailures 0, never takes one out', async () => {
      const { lb, port } = await balancer({ ejectAfterFailures: 0 });
      const events = listen(lb);
      const a = await upstream('a');
      const bad = await faulty('bad', 'reset');
      await apply(lb, web, [bad.upstream(), a.upstream()]);
      for (let i = 0; i < 12; i++) expect((await request(port, '/web/x')).status).toBe(200);
      // Weighted round-robin alternates first tries (a retry does not move it): half try bad first.
      expect(bad.hits()).toBe(6);
      expect(events).toEqual([]);
    });

    it('counts upstream timeouts: a silent upstream is out after 2, its idempotent requests answered elsewhere', async () => {
      const { lb, port } = await balancer({ ejectAfterFailures: 2, ejectBaseMs: 60_000, upstreamTimeoutMs: 200 });
      const events = listen(lb);
      const a = await upstream('a');
      const hung = await faulty('hung', 'hang');
      await apply(lb, web, [hung.upstream(), a.upstream()]);
      for (let i = 0; i < 8; i++) expect(await request(port, '/web/x')).toMatchObject({ status: 200, body: 'a' });
      expect(hung.hits()).toBe(2);
      expect(events).toMatchObject([{ kind: 'EJECTED', taskId: 'hung', reason: 'timeout' }]);
    });
  });

  it('answers 502 when no upstream can be reached', async () => {
    const { lb, port } = await balancer();
    await apply(lb, web, [{ taskId: 'r1', host: '127.0.0.1', port: await refusedPort() }]);
    const response = await request(port, '/web/x', { timeoutMs: 2_000 });
    expect(response.status).toBe(502);
    expect(JSON.parse(response.body)).toMatchObject({ error: expect.any(String), service: 'web' });
  });

  it('does not retry a non-idempotent request the upstream may have seen', async () => {
    const { lb, port } = await balancer();
    const a = await upstream('a');
    let hits = 0;
    // Reads the request, then drops the connection without answering.
    const dropper = http.createServer((req) => {
      hits += 1;
      req.resume();
      req.on('end', () => req.socket.destroy());
    });
    await new Promise<void>((resolve) => dropper.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => dropper.close(() => resolve())));
    const dropperUpstream = { taskId: 'dropper', host: '127.0.0.1', port: (dropper.address() as AddressInfo).port };
    await apply(lb, web, [dropperUpstream, a.upstream()]);

    // Round-robin sends every other request to the dropper first.
    const posts = [];
    for (const body of ['once', undefined, 'twice', undefined]) {
      posts.push((await request(port, '/web/pay', { method: 'POST', ...(body ? { body } : {}) })).status);
    }
    expect(posts.sort()).toEqual([200, 200, 502, 502]);
    expect(hits).toBe(2);

    // An idempotent request may be repeated elsewhere: GETs the dropper saw still end at a.
    for (let i = 0; i < 4; i += 1) expect((await request(port, '/web/read')).body).toBe('a');
    expect(hits).toBeGreaterThan(2);
  });

  it('streams bodies both ways without buffering them', async () => {
    const { lb, port } = await balancer();
    let finish: (() => void) | undefined;
    const streamer = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      req.on('data', (chunk: Buffer) => res.write(`echo:${chunk.toString()};`));
      req.on('end', () => {
        res.write('first;');
        finish = () => res.end('last');
      });
    });
    await new Promise<void>((resolve) => streamer.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => {
      streamer.closeAllConnections();
      return new Promise<void>((resolve) => streamer.close(() => resolve()));
    });
    await apply(lb, web, [{ taskId: 's', host: '127.0.0.1', port: (streamer.address() as AddressInfo).port }]);

    const received: string[] = [];
    const done = new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/web/stream', agent: false }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          received.push(chunk);
          // The second request chunk is only sent once the first came back through the proxy.
          if (received.join('').includes('echo:one;') && !req.writableEnded) req.end('two');
        });
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.setTimeout(5_000, () => req.destroy(new Error('stream test timed out')));
      req.write('one');
    });
    await waitFor(() => received.join('').includes('first;'), 'the partial response to stream through');
    expect(received.join('')).toBe('echo:one;echo:two;first;');
    finish?.();
    expect(await done).toBe(200);
    expect(received.join('')).toBe('echo:one;echo:two;first;last');
  });

  it('destroys the upstream request when the client goes away', async () => {
    const { lb, port } = await balancer();
    const a = await upstream('a');
    await apply(lb, web, [a.upstream()]);
    const req = http.get({ host: '127.0.0.1', port, path: '/web/slow', agent: false });
    req.on('error', () => {});
    await waitFor(() => a.held() === 1, 'the request to reach a');
    req.destroy();
    await waitFor(() => a.held() === 0, 'the upstream request to be destroyed');
    await waitFor(() => lb.stats().web?.upstreams[0]?.inFlight === 0, 'in-flight count back to 0');
    expect((await request(port, '/web/x')).body).toBe('a');
  });

  it('destroys the upstream request when the client goes away mid-upload', async () => {
    const { lb, port } = await balancer();
    let upstreamSawAbort = false;
    const sink = http.createServer((req) => {
      req.on('data', () => {});
      req.on('close', () => {
        if (!req.complete) upstreamSawAbort = true;
      });
    });
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => {
      sink.closeAllConnections();
      return new Promise<void>((resolve) => sink.close(() => resolve()));
    });
    await apply(lb, web, [{ taskId: 'sink', host: '127.0.0.1', port: (sink.address() as AddressInfo).port }]);

    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'PUT',
      path: '/web/upload',
      headers: { 'content-length': '1000' },
      agent: false,
    });
    req.on('error', () => {});
    req.write('x'.repeat(10));
    await waitFor(() => lb.stats().web?.upstreams[0]?.inFlight === 1, 'the upload to reach the upstream');
    req.destroy();
    await waitFor(() => upstreamSawAbort, 'the upstream to see the upload cut');
    await waitFor(() => lb.stats().web?.upstreams[0]?.inFlight === 0, 'in-flight count back to 0');
  });

  it('tunnels upgrade requests and drains them like requests', async () => {
    const { lb, port } = await balancer();
    // An echo protocol: after the 101, every byte comes straight back.
    const echo = http.createServer((_req, res) => res.end('no upgrade'));
    echo.on('upgrade', (_req, socket: Socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => {
      echo.closeAllConnections();
      return new Promise<void>((resolve) => echo.close(() => resolve()));
    });
    const echoUpstream = { taskId: 'echo', host: '127.0.0.1', port: (echo.address() as AddressInfo).port };
    await apply(lb, web, [echoUpstream]);

    const socket = await new Promise<Socket>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port,
        path: '/web/ws',
        headers: { connection: 'upgrade', upgrade: 'echo' },
        agent: false,
      });
      req.on('upgrade', (res, s) => (res.statusCode === 101 ? resolve(s) : reject(new Error(`status ${res.statusCode}`))));
      req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
      req.on('error', reject);
      req.setTimeout(5_000, () => req.destroy(new Error('upgrade timed out')));
      req.end();
    });
    cleanups.push(() => void socket.destroy());
    let echoed = '';
    socket.on('data', (chunk: Buffer) => (echoed += chunk.toString()));
    socket.write('ping');
    await waitFor(() => echoed === 'ping', 'the echo through the tunnel');

    const removal = await apply(lb, web, [], [echoUpstream]);
    expect(removal.status.state).toBe('WAITING');
    socket.write('still-open');
    await waitFor(() => echoed === 'pingstill-open', 'the tunnel to keep working while draining');
    socket.destroy();
    expect((await settled(lb, removal.id)).state).toBe('SUCCESS');

    await apply(lb, web, [], []);
    const refused = await new Promise<number>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port,
        path: '/web/ws',
        headers: { connection: 'upgrade', upgrade: 'echo' },
        agent: false,
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('upgrade', () => reject(new Error('upgraded with no upstream')));
      req.on('error', reject);
      req.end();
    });
    expect(refused).toBe(503);
  });

  it('survives an upstream dying mid-response', async () => {
    const { lb, port } = await balancer();
    const dying = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial', () => res.socket?.destroy());
    });
    await new Promise<void>((resolve) => dying.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => dying.close(() => resolve())));
    await apply(lb, web, [{ taskId: 'dying', host: '127.0.0.1', port: (dying.address() as AddressInfo).port }]);

    await expect(request(port, '/web/x')).rejects.toThrow();
    await waitFor(() => lb.stats().web?.upstreams[0]?.inFlight === 0, 'in-flight count back to 0');
    const a = await upstream('a');
    await apply(lb, web, [a.upstream()], [{ taskId: 'dying', host: '127.0.0.1', port: 1 }]);
    expect((await request(port, '/web/x')).body).toBe('a');
  });

  it('loses no request under steady concurrent load while upstreams are swapped', async () => {
    const { lb, port } = await balancer();
    const [a, b, c, d] = await Promise.all(['a', 'b', 'c', 'd'].map((n) => upstream(n)));
    if (!a || !b || !c || !d) throw new Error('upstreams did not start');
    await apply(lb, web, [a.upstream(), b.upstream()]);
    const { agent } = keepAliveAgent(10);

    const total = 500;
    let started = 0;
    let completed = 0;
    const failures: string[] = [];
    const swaps: string[] = [];
    const worker = async () => {
      while (started < total) {
        started += 1;
        try {
          const res = await request(port, `/web/item/${started}`, { agent });
          if (res.status !== 200) failures.push(`${res.status} ${res.body}`);
        } catch (err) {
          failures.push(String(err));
        }
        completed += 1;
        // Swap in lock-step with progress, so the swaps always happen under load.
        if (completed === 150) swaps.push((await apply(lb, web, [c.upstream(), d.upstream()], [a.upstream(), b.upstream()])).id);
        if (completed === 350) swaps.push((await apply(lb, web, [a.upstream(), b.upstream()], [c.upstream(), d.upstream()])).id);
      }
    };
    await Promise.all(Array.from({ length: 10 }, worker));

    expect(failures).toEqual([]);
    expect(completed).toBe(total);
    for (const id of swaps) expect((await settled(lb, id)).state).toBe('SUCCESS');
    for (const server of [a, b, c, d]) expect(server.received.length).toBeGreaterThan(0);
    expect((await lb.upstreams('web')).map((u) => u.taskId).sort()).toEqual(['a', 'b']);
  });

  it('closes with client keep-alive connections open', async () => {
    const { lb, port } = await balancer();
    const a = await upstream('a');
    await apply(lb, web, [a.upstream()]);
    const { agent } = keepAliveAgent(1);
    await request(port, '/web/x', { agent });
    await lb.close();
    await expect(request(port, '/web/x', { timeoutMs: 1_000 })).rejects.toThrow();
  });
});
