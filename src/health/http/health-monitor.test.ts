import { afterEach, describe, expect, it } from 'vitest';
import type { HealthAssessment } from '../../core/health.ts';
import type { HealthResult } from '../../core/model.ts';
import { HealthMonitor, healthUrl } from './health-monitor.ts';
import { freePort, hc, startServer, waitFor, type TestServer } from '../test-servers.test-helper.ts';

interface Event {
  taskId: string;
  result: HealthResult | undefined;
  assessment: HealthAssessment;
}

const servers: TestServer[] = [];
const monitors: HealthMonitor[] = [];
const serve = async (...args: Parameters<typeof startServer>) => {
  const s = await startServer(...args);
  servers.push(s);
  return s;
};
function monitor() {
  const events: Event[] = [];
  const m = new HealthMonitor({ now: Date.now, onResult: (taskId, result, assessment) => events.push({ taskId, result, assessment }) });
  monitors.push(m);
  const final = () => events.find((e) => e.assessment.state !== 'UNKNOWN')?.assessment;
  const settled = async () => {
    await waitFor(() => final() !== undefined, 5_000, 'a final assessment');
    return final()!;
  };
  return { m, events, final, settled };
}
const task = (port: number, taskId = 't1') => ({ taskId, host: '127.0.0.1', ports: [port], runningAt: Date.now() });

afterEach(async () => {
  await Promise.all(monitors.splice(0).map((m) => m.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('HealthMonitor', () => {
  it('reports "starting" while the port refuses, then HEALTHY once it answers 2xx', async () => {
    const port = await freePort();
    const { m, events, settled } = monitor();
    m.watch(task(port), hc(), 5);
    await waitFor(() => events.length >= 2, 5_000, 'two refused probes');
    await serve((_req, res) => res.end('up'), port);

    const a = await settled();
    expect(a.state).toBe('HEALTHY');
    const results = events.map((e) => e.result!);
    expect(results.slice(0, 2).every((r) => r.startup && r.errorMessage === 'Connection refused')).toBe(true);
    expect(results.at(-1)).toMatchObject({ statusCode: 200, responseBody: 'up', startup: false });
    expect(a.healthyAt).toBeGreaterThanOrEqual(results.at(-1)!.timestamp);
    // and goes on checking it for as long as it runs
    expect(m.watching('t1')).toBe(true);
  });

  it('is UNHEALTHY at once on a failureStatusCode', async () => {
    const s = await serve((_req, res) => res.writeHead(503).end('down'));
    const { m, events, settled } = monitor();
    m.watch(task(s.port), hc({ maxRetries: 5 }), 5);
    expect(await settled()).toEqual({ state: 'UNHEALTHY', message: 'Health check returned failure status 503' });
    expect(events).toHaveLength(1);
    expect(s.requests).toHaveLength(1);
  });

  it('is UNHEALTHY after more than maxRetries failed responses, probing every intervalSeconds', async () => {
    const s = await serve((_req, res) => res.writeHead(500).end());
    const { m, events, settled } = monitor();
    m.watch(task(s.port), hc({ maxRetries: 2, intervalSeconds: 0.05 }), 5);
    expect(await settled()).toEqual({ state: 'UNHEALTHY', message: 'Health check failed 3 times (maxRetries 2)' });
    expect(s.requests).toHaveLength(3);
    const results = events.map((e) => e.result!);
    for (let i = 1; i < results.length; i++) {
      const prevEnd = results[i - 1]!.timestamp + results[i - 1]!.durationMillis;
      expect(results[i]!.timestamp - prevEnd).toBeGreaterThanOrEqual(45); // timers may fire a hair early
    }
  });

  it('follows redirects to a 2xx', async () => {
    const s = await serve((req, res) => {
      if (req.url === '/health') res.writeHead(307, { location: '/really' }).end();
      else res.end('fine');
    });
    const { m, settled } = monitor();
    m.watch(task(s.port), hc(), 5);
    expect((await settled()).state).toBe('HEALTHY');
    expect(s.requests.map((r) => r.url)).toEqual(['/health', '/really']);
  });

  it('is UNHEALTHY when the port keeps refusing past startupTimeoutSeconds', async () => {
    const port = await freePort();
    const { m, events, settled } = monitor();
    const t = task(port);
    m.watch(t, hc({ startupTimeoutSeconds: 0.3, startupIntervalSeconds: 0.05 }), 5);
    expect(await settled()).toEqual({ state: 'UNHEALTHY', message: 'Health check did not respond within the startup timeout of 0.3s' });
    expect(events.every((e) => e.result!.startup)).toBe(true);
    const last = events.at(-1)!.result!;
    expect(last.timestamp + last.durationMillis).toBeGreaterThanOrEqual(t.runningAt + 300);
  });

  it('bounds each probe by responseTimeoutSeconds and fails a server that never answers within the window', async () => {
    const s = await serve(() => {});
    const { m, events, settled } = monitor();
    // window: 0.2 + (0.05 + 0.1) × 2 = 0.5s
    const o = hc({ startupTimeoutSeconds: 0.2, intervalSeconds: 0.05, responseTimeoutSeconds: 0.1, maxRetries: 1 });
    m.watch(task(s.port), o, 5);
    expect(await settled()).toEqual({ state: 'UNHEALTHY', message: 'Health check did not pass within 0.5s of the task running' });
    for (const { result } of events) {
      expect(result).toMatchObject({ startup: false, errorMessage: 'No response within 100ms' });
      expect(result!.durationMillis).toBeLessThan(1_000);
    }
  });

  it('keeps only the first bytes of the body on each result', async () => {
    const s = await serve((_req, res) => res.writeHead(503).end('z'.repeat(10_000)));
    const { m, events, settled } = monitor();
    m.watch(task(s.port), hc(), 5);
    await settled();
    expect(events[0]!.result!.responseBody).toBe('z'.repeat(512));
  });

  it('probes with POST when the healthcheck says so', async () => {
    const s = await serve((req, res) => res.writeHead(req.method === 'POST' ? 200 : 405).end());
    const { m, settled } = monitor();
    m.watch(task(s.port), hc({ method: 'POST' }), 5);
    expect((await settled()).state).toBe('HEALTHY');
    expect(s.requests).toEqual([{ method: 'POST', url: '/health' }]);
  });

  it('uses portNumber over the task port at portIndex', async () => {
    const s = await serve((_req, res) => res.end());
    const closed = await freePort();
    const { m, settled } = monitor();
    m.watch({ ...task(closed), ports: [closed, closed] }, hc({ portIndex: 1, portNumber: s.port }), 5);
    expect((await settled()).state).toBe('HEALTHY');
  });

  it('probes the port at portIndex', async () => {
    const s = await serve((_req, res) => res.end());
    const closed = await freePort();
    const { m, settled } = monitor();
    m.watch({ ...task(closed), ports: [closed, s.port] }, hc({ portIndex: 1 }), 5);
    expect((await settled()).state).toBe('HEALTHY');
  });

  it('never overlaps probes of one task', async () => {
    let open = 0;
    let maxOpen = 0;
    const s = await serve((_req, res) => {
      maxOpen = Math.max(maxOpen, ++open);
      setTimeout(() => res.writeHead(500).end(), 30);
      res.on('finish', () => open--);
    });
    const { m, settled } = monitor();
    m.watch(task(s.port), hc({ intervalSeconds: 0.001, maxRetries: 4 }), 5);
    expect((await settled()).state).toBe('UNHEALTHY');
    expect(s.requests).toHaveLength(5);
    expect(maxOpen).toBe(1);
  });

  describe('after a restart', () => {
    const failed = (timestamp: number): HealthResult => ({ timestamp, durationMillis: 1, statusCode: 500, startup: false });

    it('continues counting failures from the previous results', async () => {
      const s = await serve((_req, res) => res.writeHead(500).end());
      const { m, settled } = monitor();
      const t = task(s.port);
      m.watch(t, hc({ maxRetries: 2 }), 5, [failed(t.runningAt), failed(t.runningAt + 1)]);
      expect(await settled()).toEqual({ state: 'UNHEALTHY', message: 'Health check failed 3 times (maxRetries 2)' });
      expect(s.requests).toHaveLength(1);
    });

    it('waits out the interval since the last previous probe', async () => {
      const s = await serve((_req, res) => res.end());
      const { m, events, settled } = monitor();
      const t = task(s.port);
      const before = Date.now();
      const a = m.watch(t, hc({ intervalSeconds: 0.3 }), 5, [failed(before)]);
      expect(a).toEqual({ state: 'UNKNOWN', nextProbeAt: before + 1 + 300 });
      await settled();
      expect(events[0]!.result!.timestamp).toBeGreaterThanOrEqual(before + 1 + 300 - 2);
    });

    it('does not probe a task already judged (without checks while running)', async () => {
      const s = await serve((_req, res) => res.end());
      const { m, events } = monitor();
      const t = task(s.port);
      const ok: HealthResult = { timestamp: t.runningAt, durationMillis: 3, statusCode: 200, startup: false };
      expect(m.watch(t, hc({ checkWhileRunning: false }), 5, [ok])).toEqual({ state: 'HEALTHY', healthyAt: t.runningAt + 3 });
      expect(m.watching('t1')).toBe(false);
      expect(m.watch(task(s.port, 't2'), hc({ checkWhileRunning: false }), 5, { state: 'HEALTHY' })).toEqual({ state: 'HEALTHY' });
      expect(m.watching('t2')).toBe(false);
      await m.close();
      expect(events).toHaveLength(0);
      expect(s.requests).toHaveLength(0);
    });

    it('goes on checking a task that was healthy, from its stored counters, after an interval since its last check', async () => {
      const s = await serve((_req, res) => res.writeHead(500).end());
      const { m, events, settled } = monitor();
      const before = Date.now();
      const a = m.watch(task(s.port), hc({ maxRetries: 2, intervalSeconds: 0.2 }), 5, {
        state: 'HEALTHY',
        consecutiveFailures: 2,
        lastCheckAt: before,
      });
      expect(a.state).toBe('HEALTHY');
      // an interval after the last check, spread over at most one more
      expect(a.nextProbeAt).toBeGreaterThanOrEqual(before + 200);
      expect(a.nextProbeAt).toBeLessThan(before + 400 + 5);
      // two failures were stored: the next one is the third in a row
      expect(await settled()).toMatchObject({ state: 'UNHEALTHY', consecutiveFailures: 3 });
      expect(events).toHaveLength(1);
    });
  });

  it('reports a task without a healthcheck HEALTHY after considerHealthyAfterRunningForSeconds', async () => {
    const { m, events, settled } = monitor();
    const t = task(1);
    expect(m.watch(t, undefined, 0.1)).toEqual({ state: 'UNKNOWN', nextProbeAt: t.runningAt + 100 });
    expect(await settled()).toEqual({ state: 'HEALTHY', healthyAt: t.runningAt + 100 });
    expect(events).toEqual([{ taskId: 't1', result: undefined, assessment: { state: 'HEALTHY', healthyAt: t.runningAt + 100 } }]);
    expect(Date.now()).toBeGreaterThanOrEqual(t.runningAt + 100);
  });

  it('watches tasks independently', async () => {
    const ok = await serve((_req, res) => res.end());
    const bad = await serve((_req, res) => res.writeHead(503).end());
    const { m, events } = monitor();
    m.watch(task(ok.port, 'a'), hc(), 5);
    m.watch(task(bad.port, 'b'), hc(), 5);
    await waitFor(() => events.length === 2, 5_000, 'both tasks judged');
    const by = Object.fromEntries(events.map((e) => [e.taskId, e.assessment.state]));
    expect(by).toEqual({ a: 'HEALTHY', b: 'UNHEALTHY' });
  });

  it('stops reporting a task after unwatch, dropping a probe in flight', async () => {
    const s = await serve(() => {}); // hold the probe open
    const { m, events } = monitor();
    m.watch(task(s.port), hc({ responseTimeoutSeconds: 0.2 }), 5);
    await waitFor(() => s.requests.length === 1, 5_000, 'a probe in flight');
    m.unwatch('t1');
    expect(m.watching('t1')).toBe(false);
    await m.close(); // waits for the in-flight probe to end
    expect(events).toHaveLength(0);
    expect(s.requests).toHaveLength(1);
  });

  it('close() waits for probes in flight and nothing reports afterwards', async () => {
    let arrivedAt = 0;
    const s = await serve(() => {
      arrivedAt = Date.now();
    });
    const { m, events } = monitor();
    m.watch(task(s.port), hc({ responseTimeoutSeconds: 0.2 }), 5);
    await waitFor(() => s.requests.length === 1, 5_000, 'a probe in flight');
    await m.close();
    // it did wait for the probe, which can only end at its timeout
    expect(Date.now()).toBeGreaterThanOrEqual(arrivedAt + 150);
    expect(events).toHaveLength(0);
    expect(() => m.watch(task(s.port, 't2'), hc(), 5)).toThrow(/closed/);
  });

  it('keeps probing when onResult throws', async () => {
    const s = await serve((_req, res) => res.writeHead(500).end());
    const errors: unknown[] = [];
    let calls = 0;
    const m = new HealthMonitor({
      now: Date.now,
      onResult: () => {
        calls++;
        throw new Error('store down');
      },
      onError: (_id, err) => errors.push(err),
    });
    monitors.push(m);
    m.watch(task(s.port), hc({ maxRetries: 1 }), 5);
    await waitFor(() => calls === 2, 5_000, 'two results');
    expect(errors).toHaveLength(2);
    expect(m.watching('t1')).toBe(false);
  });
});

describe('HealthMonitor while a task runs', () => {
  it('keeps probing every intervalSeconds; a task that stops answering is UNHEALTHY after maxRetries + 1 timeouts', async () => {
    let hang = false;
    const s = await serve((_req, res) => {
      if (!hang) res.end('ok');
    });
    const { m, events } = monitor();
    const o = hc({ intervalSeconds: 0.05, responseTimeoutSeconds: 0.1, maxRetries: 2 });
    m.watch(task(s.port), o, 5);
    await waitFor(() => events.filter((e) => e.assessment.state === 'HEALTHY').length >= 4, 5_000, 'four passes');
    expect(events[0]!.assessment.state).toBe('HEALTHY');
    expect(m.watching('t1')).toBe(true);
    hang = true; // frozen, as after SIGSTOP: the port accepts, nothing answers
    const a = await waitFor(() => events.some((e) => e.assessment.state === 'UNHEALTHY'), 5_000, 'UNHEALTHY').then(
      () => events.find((e) => e.assessment.state === 'UNHEALTHY')!.assessment,
    );
    expect(a).toEqual({
      state: 'UNHEALTHY',
      consecutiveFailures: 3,
      message: 'unhealthy while running: 3 failed checks, last: timeout after 0.1 s',
    });
    const failed = events.slice(-3);
    expect(failed.every((e) => e.result?.timedOut === true)).toBe(true);
    expect(failed.map((e) => e.assessment.consecutiveFailures)).toEqual([1, 2, 3]);
    // final: no probe after the verdict
    expect(m.watching('t1')).toBe(false);
    const requests = s.requests.length;
    await new Promise((r) => setTimeout(r, 150));
    expect(s.requests.length).toBe(requests);
  });

  it('forgives failures in a row fewer than maxRetries + 1 once a check passes', async () => {
    let answers = [200, 500, 500, 200, 500, 500, 200];
    const s = await serve((_req, res) => res.writeHead(answers.shift() ?? 200).end());
    const { m, events } = monitor();
    m.watch(task(s.port), hc({ intervalSeconds: 0.02, maxRetries: 2 }), 5);
    await waitFor(() => events.length >= 8, 5_000, 'eight results');
    expect(events.map((e) => e.assessment.consecutiveFailures)).toEqual([0, 1, 2, 0, 1, 2, 0, 0]);
    expect(events.every((e) => e.assessment.state === 'HEALTHY')).toBe(true);
    answers = [];
  });

  it('checkWhileRunning false: the first verdict is the last probe', async () => {
    const s = await serve((_req, res) => res.end());
    const { m, settled } = monitor();
    m.watch(task(s.port), hc({ checkWhileRunning: false, intervalSeconds: 0.01 }), 5);
    expect((await settled()).state).toBe('HEALTHY');
    expect(m.watching('t1')).toBe(false);
    await new Promise((r) => setTimeout(r, 60));
    expect(s.requests).toHaveLength(1);
  });

  it('probeNow probes a healthy task at once instead of an interval later', async () => {
    const s = await serve((_req, res) => res.end());
    const { m, events } = monitor();
    m.watch(task(s.port), hc({ intervalSeconds: 60 }), 5);
    await waitFor(() => events.length === 1, 5_000, 'the first pass');
    m.probeNow('t1');
    await waitFor(() => events.length === 2, 5_000, 'the probe asked for (the next one was due in a minute)');
    m.probeNow('unknown'); // not watched: nothing
    expect(m.stats().watched).toBe(1);
  });

  it('never runs more probes at once than maxConcurrentProbes, over all tasks, and still probes them all', async () => {
    let open = 0;
    let maxOpen = 0;
    const s = await serve((_req, res) => {
      maxOpen = Math.max(maxOpen, ++open);
      setTimeout(() => res.end(), 20);
      res.on('finish', () => open--);
    });
    const events: Event[] = [];
    const m = new HealthMonitor({
      now: Date.now,
      maxConcurrentProbes: 2,
      onResult: (taskId, result, assessment) => events.push({ taskId, result, assessment }),
    });
    monitors.push(m);
    for (let i = 0; i < 8; i++) m.watch(task(s.port, `t${i}`), hc({ checkWhileRunning: false }), 5);
    await waitFor(() => events.length === 8, 5_000, 'all eight judged');
    expect(new Set(events.map((e) => e.taskId)).size).toBe(8);
    expect(maxOpen).toBeLessThanOrEqual(2);
  });
});

describe('healthUrl', () => {
  it.each([
    ['http', { protocol: 'HTTP' as const, uri: '/health' }, 'h1', 8080, 'http://h1:8080/health'],
    ['https', { protocol: 'HTTPS' as const, uri: '/health?x=1' }, 'h1', 443, 'https://h1:443/health?x=1'],
    ['a uri without a leading slash', { protocol: 'HTTP' as const, uri: 'ping' }, 'h1', 80, 'http://h1:80/ping'],
    ['an IPv6 host', { protocol: 'HTTP' as const, uri: '/' }, '::1', 80, 'http://[::1]:80/'],
  ])('builds the URL for %s', (_name, opts, host, port, expected) => {
    expect(healthUrl(opts, host, port)).toBe(expected);
  });
});
