// How close a deploy of containers gets to what Docker itself needs:
// `npx tsx bench/docker-deploy.ts [N] [rounds]`.
//
// In one run, against one private dockerd (test/helpers/dockerd.ts, the locally built image):
// (1) the limit — create and start N containers of the example service straight through the
// Docker Engine API (host networking, the same limits and init process Fledge sets) and poll
// each /health every 50 ms until its first 2xx; (2) an atomic deploy of the same N containers
// through an in-process Fledge with that Docker host, POST /api/deploys → SUCCEEDED, health
// probed every 50 ms too. Trials alternate, so both see the same machine and daemon load;
// medians are printed, and their ratio.
import { loadConfig } from '../src/config/index.ts';
import { DockerClient } from '../src/runtimes/docker/client.ts';
import { planContainer } from '../src/runtimes/docker/container-config.ts';
import { startServer } from '../src/server.ts';
import { importTestImage } from '../test/helpers/docker-images.ts';
import { startDockerd } from '../test/helpers/dockerd.ts';
import { reservePorts } from '../test/helpers/ports.ts';
import { tempDataDir } from '../src/runtimes/test-support.ts';

const N = Number(process.argv[2] ?? 5);
const ROUNDS = Number(process.argv[3] ?? 3);
const POLL_MS = 50;
const REQUEST = 'bench';

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

async function healthy(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** Create and start `ports.length` containers at once; ms to the last one's first 2xx. */
async function measureLimit(client: DockerClient, image: string, ports: number[], round: number): Promise<number> {
  const ids: string[] = [];
  const start = performance.now();
  try {
    const times = await Promise.all(
      ports.map(async (port, i) => {
        const { body } = planContainer({
          taskId: `limit-${round}-${i}`,
          instanceNo: i + 1,
          docker: { image, privileged: false, network: 'HOST', portMappings: [], forcePullImage: false, dockerParameters: [] },
          volumes: [],
          env: { VERSION: 'limit', PORT: String(port), PORT0: String(port) },
          ports: [port],
          cpus: 0.1,
          memoryMb: 64,
          labels: { 'bench.limit': 'true' },
        });
        const id = await client.createContainer(`bench-limit-${round}-${i}`, body);
        ids.push(id);
        await client.startContainer(id);
        const began = performance.now();
        for (;;) {
          if (await healthy(port)) return performance.now() - start;
          const next = began + Math.ceil((performance.now() - began + 1) / POLL_MS) * POLL_MS;
          await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
        }
      }),
    );
    return Math.max(...times);
  } finally {
    await Promise.all(ids.map((id) => client.removeContainer(id, { force: true })));
  }
}

async function call<T>(url: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${url}${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function main(): Promise<void> {
  const dockerd = await startDockerd({ name: 'bench' });
  const limitPorts = reservePorts(50);
  const dockerPorts = reservePorts(Math.max(50, 2 * N + 10));
  const localPorts = reservePorts(50);
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    const image = await importTestImage(dockerd.client);
    const client = new DockerClient({ kind: 'unix', socketPath: dockerd.socket }, { timeoutMs: 30_000 });
    server = await startServer(
      loadConfig(
        {
          host: '127.0.0.1',
          port: 0,
          lb: 'none',
          dataDir: await tempDataDir('fledge-bench-'),
          portRangeFrom: localPorts.from,
          portRangeTo: localPorts.to,
          dockerHost: [`id=d1,endpoint=${dockerd.endpoint},ports=${dockerPorts.from}-${dockerPorts.to}`],
          killGraceSeconds: 2,
          logLevel: 'warn',
        },
        {},
      ),
    );
    const url = server.url;
    await call(url, 'POST', '/api/requests', { id: REQUEST, requestType: 'SERVICE', instances: N });
    const deploy = (id: string) => ({
      deploy: {
        requestId: REQUEST,
        id,
        containerInfo: { type: 'DOCKER', docker: { image, network: 'HOST' } },
        env: { VERSION: id },
        resources: { cpus: 0.1, memoryMb: 64, numPorts: 1 },
        healthcheck: { uri: '/health', startupIntervalSeconds: POLL_MS / 1000, intervalSeconds: 1 },
      },
    });
    const limits: number[] = [];
    const deploys: number[] = [];
    // Warm-up: the first container start of a daemon pays for its caches.
    await measureLimit(client, image, [limitPorts.from], -1);
    for (let round = 0; round < ROUNDS; round++) {
      limits.push(
        await measureLimit(
          client,
          image,
          Array.from({ length: N }, (_, i) => limitPorts.from + i),
          round,
        ),
      );
      const id = `r${round}`;
      const t0 = performance.now();
      await call(url, 'POST', '/api/deploys', deploy(id));
      for (;;) {
        const entry = await call<{ deployResult?: { deployState: string; message: string } }>(
          url,
          'GET',
          `/api/history/request/${REQUEST}/deploy/${id}`,
        );
        if (entry.deployResult) {
          if (entry.deployResult.deployState !== 'SUCCEEDED') throw new Error(`deploy ${id}: ${JSON.stringify(entry.deployResult)}`);
          break;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      deploys.push(performance.now() - t0);
      // The previous deploy's containers leave before the next trial.
      for (;;) {
        const tasks = await call<{ taskId: { deployId: string } }[]>(url, 'GET', `/api/tasks/request/${REQUEST}`);
        if (tasks.length === N && tasks.every((t) => t.taskId.deployId === id)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      console.log(`round ${round + 1}: limit ${limits.at(-1)?.toFixed(0)} ms, atomic deploy ${deploys.at(-1)?.toFixed(0)} ms`);
    }
    const limit = median(limits);
    const atomic = median(deploys);
    console.log('');
    console.log(`| measure (N = ${N} containers, median of ${ROUNDS}) | ms | ratio to the limit |`);
    console.log('|---|---|---|');
    console.log(`| limit: create + start ${N} containers through the Docker API to their first 2xx | ${limit.toFixed(0)} | 1.00× |`);
    console.log(`| atomic deploy of ${N} containers: POST → SUCCEEDED | ${atomic.toFixed(0)} | ${(atomic / limit).toFixed(2)}× |`);
    await call(url, 'DELETE', `/api/requests/request/${REQUEST}`);
    for (;;) {
      const tasks = await call<unknown[]>(url, 'GET', '/api/tasks/active');
      if (tasks.length === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    client.close();
  } finally {
    await server?.close();
    await dockerd.stop();
  }
}

await main();
