// The acceptance check contract against each implementation. The Prometheus one is asked of a
// minimal HTTP server speaking the query API (real Prometheus runs in test/component).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll } from 'vitest';
import { addCounts, emptyCounts, type ServiceTraffic } from '../balancers/traffic.ts';
import { createCommandCheck } from './command/index.ts';
import { checkContract } from './contract.case.ts';
import { FakeCheck } from './fake/index.ts';
import { createHttpCheck } from './http/index.ts';
import { createLbCheck } from './lb/index.ts';
import { prometheusCheckFactory } from './prometheus/index.ts';

let server: Server;
let base = '';
beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    if (req.url?.startsWith('/api/v1/query')) {
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [{ metric: {}, value: [Date.now() / 1000, '1'] }] } }),
      );
      return;
    }
    res.writeHead(req.url === '/ok' ? 200 : 500).end(req.url);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

checkContract('http', () => ({
  options: async (outcome) => ({ url: `${base}/${outcome === 'pass' ? 'ok' : 'broken'}` }),
  create: createHttpCheck,
}));

checkContract('command', () => ({
  options: async (outcome) => ({ command: outcome === 'pass' ? 'exit 0' : 'echo broken >&2; exit 1' }),
  create: createCommandCheck,
}));

/** The balancer's counters for a window: `errors` of 200 requests of each deploy were 5xx. */
function traffic(newErrors: number): ServiceTraffic {
  const side = (deployId: string, errors: number) => {
    const counts = emptyCounts();
    counts.requests = 200;
    counts.responses['2xx'] = 200 - errors;
    counts.responses['5xx'] = errors;
    counts.latency.counts[0] = 200;
    return { deployId, ...counts };
  };
  const deploys = [side('d1', 0), side('d2', newErrors)];
  const total = emptyCounts();
  for (const d of deploys) addCounts(total, d);
  return { serviceId: 'web', from: 0, to: Date.now(), total, deploys, tasks: [] };
}

checkContract('lb', () => ({
  options: async () => ({ maxErrorRate: 0.05, windowSeconds: 60 }),
  create: createLbCheck,
  context: (outcome) => ({ traffic: async () => traffic(outcome === 'pass' ? 0 : 50) }),
}));

checkContract('prometheus', () => ({
  options: async (outcome) => ({ query: 'error_ratio', max: outcome === 'pass' ? 2 : 0.5 }),
  create: (spec) => prometheusCheckFactory({ url: base, allow: [] })(spec),
}));

checkContract('fake', () => ({
  options: async (outcome) => ({ outcome }),
  create: (spec) => {
    const check = new FakeCheck(spec.name, spec.intervalSeconds, spec.failOnError, spec.timeoutSeconds);
    check.answer =
      spec.options.outcome === 'pass' ? { state: 'SUCCEEDED', message: 'scripted' } : { state: 'FAILED', message: 'scripted failure' };
    return check;
  },
}));
