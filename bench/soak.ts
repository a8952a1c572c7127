// The chaos soak: `npm run soak -- [--seed N] [--lb builtin|haproxy] [--kills N] [--minutes M]`.
//
// A real `fledge serve` (process runtime, HTTP health checks, the chosen load balancer) runs a
// load-balanced SERVICE while steady, paced HTTP traffic goes through its load balancer.
// Episodes of random kinds follow one another — atomic deploys, canaries (TIMED and MANUAL),
// failing canaries, cancels, rejects, rollbacks, scaling, a task SIGKILLed, a bounce — and
// during each the scheduler itself is SIGKILLed at random moments and started again on the same
// data dir and ports. After every episode, once the request settled, the invariants are checked:
//   - no orphan: every process carrying a task's FLEDGE_TASK_ID mark belongs to a live task;
//   - no duplicate or lost task: one serving, healthy task of the active deploy per instance,
//     nothing else live; the API's live tasks are exactly the live processes;
//   - the LB serves only the active deploy's version;
//   - capacity never below `instances` while the episode ran: healthy tasks in (or joining) the
//     LB, sampled through the API (not sampled while a task is killed on purpose, nor while the
//     scheduler is down);
//   - no failed request through the LB — except, with the builtin LB (which lives in the
//     scheduler's process), while the scheduler is down: from its SIGKILL to the LB's first 2xx.
// Everything random comes from --seed (episode kinds, kill moments, victims), so a run can be
// repeated; the machine's timing is not. It prints kills, episodes and violations, and exits
// non-zero on any violation.
import { mkdtempSync, rmSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { FledgeApiError, type DeployBody, type DeployInput, type FledgeClient, type TaskView } from '../src/api/client.ts';
import { nodeCommand, EXAMPLE_SERVICE } from '../test/helpers/example-service.ts';
import { adminToken, boundedClient, spawnServe, type ServeChild } from '../test/helpers/fledge-process.ts';
import { freePort, reservePorts } from '../test/helpers/ports.ts';
import { killSandboxTasks } from '../test/helpers/process-cleanup.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FAIL_INSTANCE_SERVICE = path.join(HERE, '..', 'test', 'e2e', 'fixtures', 'fail-instance-service.mjs');
const TASK_MARK = 'FLEDGE_TASK_ID';

interface Options {
  seed: number;
  lb: 'builtin' | 'haproxy';
  kills: number;
  minutes: number;
  instances: number;
  verbose: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { seed: Date.now() % 100_000, lb: 'builtin', kills: 20, minutes: 10, instances: 3, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const num = () => {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${flag} needs a number, got ${value}`);
      i++;
      return n;
    };
    if (flag === '--seed') o.seed = num();
    else if (flag === '--kills') o.kills = num();
    else if (flag === '--minutes') o.minutes = num();
    else if (flag === '--instances') o.instances = Math.max(2, Math.floor(num()));
    else if (flag === '--lb') {
      if (value !== 'builtin' && value !== 'haproxy') throw new Error(`--lb builtin|haproxy, got ${value}`);
      o.lb = value;
      i++;
    } else if (flag === '--verbose') o.verbose = true;
    else throw new Error(`unknown argument ${flag} (--seed N --lb builtin|haproxy --kills N --minutes M --instances N --verbose)`);
  }
  return o;
}

/** mulberry32: small, seeded, good enough to pick episodes reproducibly. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: <T>(items: readonly T[]) => items[Math.floor(next() * items.length)] as T,
  };
}

const EPISODES = [
  'atomic',
  'canaryTimed',
  'canaryManual',
  'failingCanary',
  'cancel',
  'reject',
  'rollback',
  'scale',
  'taskKill',
  'bounce',
] as const;
type Episode = (typeof EPISODES)[number];

// Unique per run: the orphan check finds tasks by their FLEDGE_TASK_ID mark, which starts with the request id.
const REQ = `soak${process.pid}`;
const BASE = `/${REQ}`;
const HEALTH = { uri: '/health', startupIntervalSeconds: 0.1, intervalSeconds: 0.3, responseTimeoutSeconds: 1, maxRetries: 1 };
const LB_FIELDS = { serviceBasePath: BASE, loadBalancerGroups: ['default'] };

// ---- the scheduler ---------------------------------------------------------------------

class Scheduler {
  serve: ServeChild | undefined;
  #client: FledgeClient | undefined;
  readonly url: string;
  readonly lbUrl: string;
  kills = 0;
  /** [SIGKILL, LB answering again] */
  readonly downtimes: { from: number; to: number }[] = [];
  #down = false;

  constructor(
    readonly dataDir: string,
    readonly port: number,
    readonly lbPort: number,
    readonly taskPorts: { from: number; to: number },
    readonly args: string[],
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.lbUrl = `http://127.0.0.1:${lbPort}`;
  }

  /** A client with the admin token `fledge serve` wrote at its first start. */
  get client(): FledgeClient {
    this.#client ??= boundedClient(this.url, adminToken(this.dataDir), 10_000);
    return this.#client;
  }

  get down(): boolean {
    return this.#down;
  }

  async start(): Promise<void> {
    this.serve = spawnServe({ dataDir: this.dataDir, port: this.port, lbPort: this.lbPort, portRange: this.taskPorts, args: this.args });
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (this.serve.exited) throw new Error(`fledge serve exited at start:\n${this.serve.output().slice(-3000)}`);
      try {
        // /health answers without a token; the token file exists once it does
        await boundedClient(this.url, undefined, 2_000).health();
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`fledge serve did not answer within 60 s:\n${this.serve.output().slice(-3000)}`);
        await sleep(20);
      }
    }
  }

  /** SIGKILL, start again on the same data dir and ports, and time until the LB answers 2xx. */
  async killAndRestart(): Promise<void> {
    const serve = this.serve;
    if (!serve || serve.exited) return;
    this.#down = true;
    const from = Date.now();
    process.kill(serve.pid, 'SIGKILL');
    await serve.exit;
    this.kills++;
    await this.start();
    this.#down = false;
    await waitUntil(async () => (await lbGet(this.lbUrl)).status === 200, 60_000, 'the LB to answer after a restart');
    this.downtimes.push({ from, to: Date.now() });
  }

  async stop(): Promise<void> {
    if (this.serve && !this.serve.exited) {
      process.kill(this.serve.pid, 'SIGKILL');
      await this.serve.exit;
    }
  }
}

// ---- traffic ---------------------------------------------------------------------------

interface Sent {
  /** when it was sent, and when it ended */
  at: number;
  end: number;
  ok: boolean;
  detail: string;
}

function lbGet(url: string, timeoutMs = 5_000): Promise<{ status: number; body: string; error?: string }> {
  return new Promise((resolve) => {
    const req = http.get(`${url}${BASE}`, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', (err) => resolve({ status: 0, body: '', error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, body: '', error: err.message }));
  });
}

/** Paced GETs through the LB (2 workers, a request each every 25 ms): traffic without hogging the CPU. */
function startTraffic(lbUrl: string) {
  const failures: Sent[] = [];
  let ok = 0;
  let stopped = false;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const one = (): Promise<Sent> =>
    new Promise((resolve) => {
      const at = Date.now();
      const req = http.get(`${lbUrl}${BASE}`, { agent, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          resolve({
            at,
            end: Date.now(),
            ok: status >= 200 && status < 300,
            detail: `${status} ${Buffer.concat(chunks).toString().slice(0, 120)}`,
          });
        });
        res.on('error', (err) => resolve({ at, end: Date.now(), ok: false, detail: `response: ${err.message}` }));
      });
      req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
      req.on('error', (err: NodeJS.ErrnoException) =>
        resolve({ at, end: Date.now(), ok: false, detail: `${err.code ?? ''} ${err.message}` }),
      );
    });
  const worker = async () => {
    while (!stopped) {
      const r = await one();
      if (r.ok) ok++;
      else failures.push(r);
      await sleep(25);
    }
  };
  const workers = [worker(), worker()];
  return {
    failures,
    get ok() {
      return ok;
    },
    async stop() {
      stopped = true;
      await Promise.all(workers);
      agent.destroy();
    },
  };
}

// ---- API helpers that ride out the scheduler's restarts ----------------------------------

async function waitUntil<T>(fn: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await sleep(50);
  }
}

/** An API call, again while the scheduler is down or answers 5xx; a 4xx is the answer. */
async function api<T>(s: Scheduler, fn: (c: FledgeClient) => Promise<T>, what: string, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn(s.client);
    } catch (err) {
      if (err instanceof FledgeApiError && err.status < 500) throw err;
      if (Date.now() > deadline) throw new Error(`${what}: ${String(err)}`);
      await sleep(50);
    }
  }
}

/**
 * A deploy created, again while the scheduler is down. A retry of the pending deploy is answered
 * as created; one whose first attempt was written (the scheduler died before answering) and that
 * ended before the retry is refused as a used id — that deploy was created.
 */
async function createDeploy(s: Scheduler, body: DeployBody, what: string): Promise<void> {
  let failedOnce = false;
  await api(
    s,
    async (c) => {
      try {
        await c.createDeploy(body);
      } catch (err) {
        if (failedOnce && err instanceof FledgeApiError && err.status === 400 && /was already used/.test(err.message)) return;
        if (!(err instanceof FledgeApiError && err.status < 500)) failedOnce = true;
        throw err;
      }
    },
    what,
  );
}

const isServing = (t: TaskView) => !t.cleanup && ['TASK_LAUNCHED', 'TASK_STARTING', 'TASK_RUNNING'].includes(t.state);
const isHealthy = (t: TaskView) => t.state === 'TASK_RUNNING' && t.health.state === 'HEALTHY' && !t.cleanup;
/** In rotation, or joining it: healthy (being cleaned up or not: until its removal starts it serves), added or being added. */
const inRotation = (t: TaskView) =>
  (t.state === 'TASK_RUNNING' || t.state === 'TASK_CLEANING') &&
  t.health.state === 'HEALTHY' &&
  (t.lb.add?.state === 'SUCCESS' || t.lb.add?.state === 'WAITING') &&
  !t.lb.remove;
const inLb = (t: TaskView) => t.lb.add?.state === 'SUCCESS' && !t.lb.remove;

// ---- the soak ---------------------------------------------------------------------------

interface Violation {
  episode: number;
  kind: Episode;
  what: string;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const r = rng(o.seed);
  const dataDir = mkdtempSync(path.join(tmpdir(), `fledge-soak-${o.lb}-`));
  const taskPorts = reservePorts(300);
  const args = [
    '--lb',
    o.lb,
    '--kill-grace-seconds',
    '1',
    '--drain-timeout-seconds',
    '2',
    '--log-level',
    o.verbose ? 'info' : 'warn',
    ...(o.lb === 'haproxy' ? ['--haproxy-reconcile-seconds', '2'] : []),
  ];
  const s = new Scheduler(dataDir, await freePort(), await freePort(), taskPorts, args);
  const violations: Violation[] = [];
  const counts: Record<string, number> = {};
  let episodes = 0;
  let excusedFailures = 0;
  let killedTaskFailures = 0;
  const started = Date.now();
  let deploySeq = 0;
  const prefix = `${REQ}-`;
  const log = (...parts: unknown[]) => {
    if (o.verbose) console.log(new Date().toISOString().slice(11, 23), ...parts);
  };

  console.log(`soak: seed ${o.seed}, lb ${o.lb}, kills ${o.kills}, minutes ${o.minutes}, instances ${o.instances}, data ${dataDir}`);
  await s.start();
  let instances = o.instances;

  const deployBody = (extra: Partial<DeployInput> = {}, env: Record<string, string> = {}) => {
    deploySeq++;
    const id = `d${deploySeq}`;
    return {
      id,
      body: {
        deploy: {
          requestId: REQ,
          id,
          command: nodeCommand(EXAMPLE_SERVICE),
          env: { VERSION: id, ...env },
          healthcheck: HEALTH,
          deployHealthTimeoutSeconds: 20,
          loadBalancerTimeoutSeconds: 20,
          ...LB_FIELDS,
          ...extra,
        },
      },
    };
  };
  const snapshot = async () => api(s, (c) => c.requestTasks(REQ), 'list tasks');
  const parent = async () => api(s, (c) => c.getRequest(REQ), 'read the request');
  const resultOf = async (deployId: string, timeoutMs = 120_000) =>
    waitUntil(
      async () => (await api(s, (c) => c.deployHistoryEntry(REQ, deployId), 'read a deploy')).deployResult?.deployState,
      timeoutMs,
      `deploy ${deployId} to end`,
    );

  await api(s, (c) => c.createRequest({ id: REQ, requestType: 'SERVICE', instances, loadBalanced: true }), 'create the request');
  const first = deployBody();
  await createDeploy(s, first.body, 'first deploy');
  if ((await resultOf(first.id)) !== 'SUCCEEDED') throw new Error('the first deploy did not succeed');
  let active = first.id;
  let previousActive: string | undefined;
  let activeVersion = first.id;

  const traffic = startTraffic(s.lbUrl);
  await waitUntil(async () => traffic.ok > 10, 30_000, 'traffic to flow');

  // Ctrl-C (or SIGTERM) ends the run after the current episode, and the teardown still runs.
  let interrupted = false;
  const interrupt = () => {
    if (interrupted) return;
    interrupted = true;
    console.log('interrupted: finishing the current episode, then tearing down');
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);

  try {
    while (!interrupted && s.kills < o.kills && Date.now() - started < o.minutes * 60_000) {
      episodes++;
      const kind: Episode = previousActive === undefined && r.next() < 0.5 ? 'atomic' : r.pick(EPISODES);
      counts[kind] = (counts[kind] ?? 0) + 1;
      const nKills = r.next() < 0.85 ? r.int(1, 2) : 0;
      const killAt = Array.from({ length: nKills }, () => r.int(0, 3_000)).sort((a, b) => a - b);
      const episodeStart = Date.now();
      log(`episode ${episodes} ${kind}, kills at ${killAt.join(', ') || '-'} ms`);
      const violation = (what: string) => {
        violations.push({ episode: episodes, kind, what });
        console.log(`VIOLATION episode ${episodes} (${kind}): ${what}`);
        // What the running scheduler said (since its last start), kept for the post-mortem.
        const file = path.join(tmpdir(), `fledge-soak-${o.lb}-${o.seed}-episode-${episodes}.log`);
        writeFileSync(file, s.serve?.output() ?? '', { mode: 0o600 });
        console.log(`  the scheduler's output since its last start: ${file}`);
      };

      // Capacity sampled through the API while the episode runs.
      let floor = instances;
      let sampling = kind !== 'taskKill';
      let minCapacity = Infinity;
      let minAt = '';
      let sampleLoop = true;
      const sampler = (async () => {
        while (sampleLoop) {
          if (sampling && !s.down) {
            try {
              const tasks = await s.client.requestTasks(REQ);
              const n = new Set(tasks.filter(inRotation).map((t) => t.taskId.instanceNo)).size;
              if (!s.down && n < minCapacity) {
                minCapacity = n;
                minAt = tasks
                  .map(
                    (t) =>
                      `${t.taskId.deployId}#${t.taskId.instanceNo} ${t.state} ${t.health.state} ${JSON.stringify(t.lb)}${t.cleanup ? ' cleanup' : ''}`,
                  )
                  .join('; ');
              }
            } catch {
              // scheduler restarting
            }
          }
          await sleep(100);
        }
      })();

      const killer = (async () => {
        let last = 0;
        for (const at of killAt) {
          await sleep(Math.max(0, at - last));
          last = at;
          log(`  SIGKILL the scheduler (${s.kills + 1})`);
          await s.killAndRestart();
        }
      })();

      let expectActive = active;
      let expectVersion = activeVersion;
      const deployAndExpect = async (body: ReturnType<typeof deployBody>, want: string[]) => {
        await createDeploy(s, body.body, `create ${body.id}`);
        const state = await resultOf(body.id);
        if (!want.includes(state)) violation(`deploy ${body.id} ended ${state}, expected ${want.join(' or ')}`);
        if (state === 'SUCCEEDED') {
          expectActive = body.id;
          expectVersion = body.body.deploy.env?.VERSION ?? body.id;
        }
        return state;
      };
      /** Answer MANUAL steps: advance (or, with `reject`, reject the first) until the deploy ends. */
      const manual = async (deployId: string, how: 'advance' | 'reject' | 'cancel', cancelAfterMs = 0) => {
        const t0 = Date.now();
        for (;;) {
          const entry = await api(s, (c) => c.deployHistoryEntry(REQ, deployId), 'read a deploy');
          if (entry.deployResult) return entry.deployResult.deployState;
          const phase = entry.deployProgress?.phase;
          try {
            if (how === 'cancel' && Date.now() - t0 >= cancelAfterMs) await api(s, (c) => c.cancelDeploy(REQ, deployId), 'cancel');
            else if (phase === 'ACCEPTANCE' && how === 'advance') await api(s, (c) => c.advanceDeploy(REQ, deployId), 'advance');
            else if (phase === 'ACCEPTANCE' && how === 'reject') await api(s, (c) => c.rejectDeploy(REQ, deployId), 'reject');
          } catch (err) {
            // 404/409: it moved on meanwhile (ended, or not waiting for approval any more)
            if (!(err instanceof FledgeApiError)) throw err;
          }
          await sleep(100);
          if (Date.now() - t0 > 120_000) {
            violation(`deploy ${deployId} did not end within 120 s of MANUAL answers`);
            return undefined;
          }
        }
      };

      try {
        switch (kind) {
          case 'atomic':
            await deployAndExpect(deployBody(), ['SUCCEEDED']);
            break;
          case 'canaryTimed':
            await deployAndExpect(
              deployBody({
                canaryDeploySettings: {
                  enableCanaryDeploy: true,
                  instanceGroupSize: 1,
                  canaryCycleCount: 2,
                  acceptanceMode: 'TIMED',
                  waitMillisBetweenGroups: 300,
                },
              }),
              ['SUCCEEDED'],
            );
            break;
          case 'canaryManual': {
            const d = deployBody({
              canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, canaryCycleCount: 2, acceptanceMode: 'MANUAL' },
            });
            await createDeploy(s, d.body, `create ${d.id}`);
            const state = await manual(d.id, 'advance');
            if (state !== 'SUCCEEDED') violation(`MANUAL canary ${d.id} ended ${state}`);
            else [expectActive, expectVersion] = [d.id, d.id];
            break;
          }
          case 'failingCanary':
            await deployAndExpect(
              deployBody(
                {
                  command: nodeCommand(FAIL_INSTANCE_SERVICE),
                  canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, canaryCycleCount: 3 },
                },
                { FAIL_INSTANCE: '2' },
              ),
              ['FAILED'],
            );
            break;
          case 'cancel': {
            // A MANUAL canary, or an atomic deploy held in its swap by slow starts, cancelled at a random moment.
            const atomic = r.next() < 0.5;
            const d = deployBody(
              atomic
                ? {}
                : {
                    canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, canaryCycleCount: 2, acceptanceMode: 'MANUAL' },
                  },
              atomic ? { STARTUP_DELAY_MS: String(r.int(0, 1500)) } : {},
            );
            await createDeploy(s, d.body, `create ${d.id}`);
            const state = await manual(d.id, 'cancel', r.int(0, 2500));
            if (state === 'SUCCEEDED') [expectActive, expectVersion] = [d.id, d.id];
            else if (state !== 'CANCELED') violation(`cancelled deploy ${d.id} ended ${state}`);
            break;
          }
          case 'reject': {
            const d = deployBody({
              canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, canaryCycleCount: 2, acceptanceMode: 'MANUAL' },
            });
            await createDeploy(s, d.body, `create ${d.id}`);
            const state = await manual(d.id, 'reject');
            if (state !== 'FAILED') violation(`rejected deploy ${d.id} ended ${state}`);
            break;
          }
          case 'rollback': {
            if (previousActive === undefined) break;
            const back = await api(s, (c) => c.rollback(REQ), 'rollback');
            const id = back.pendingDeployState?.deployMarker.deployId ?? back.requestDeployState?.pendingDeploy?.deployId;
            if (!id) {
              violation('rollback made no pending deploy');
              break;
            }
            const state = await resultOf(id);
            if (state !== 'SUCCEEDED') violation(`rollback ${id} ended ${state}`);
            else {
              const entry = await api(s, (c) => c.deployHistoryEntry(REQ, id), 'read the rollback');
              [expectActive, expectVersion] = [id, entry.deploy.env?.VERSION ?? id];
            }
            break;
          }
          case 'scale': {
            const to = r.pick([2, 3, 4].filter((n) => n !== instances));
            floor = Math.min(instances, to);
            await api(s, (c) => c.scale(REQ, to), 'scale');
            instances = to;
            break;
          }
          case 'taskKill': {
            const live = (await snapshot()).filter((t) => isServing(t) && t.pgid !== undefined);
            const victim = live.length > 0 ? r.pick(live) : undefined;
            if (victim?.pgid) {
              try {
                process.kill(-victim.pgid, 'SIGKILL');
              } catch {
                // gone already
              }
              // Seen dead (after a scheduler restart, maybe): only then may the request settle.
              await waitUntil(
                async () => {
                  const t = await api(s, (c) => c.getTask(victim.taskId.id), 'read the killed task');
                  return !['TASK_RUNNING', 'TASK_STARTING', 'TASK_LAUNCHED', 'TASK_CLEANING', 'TASK_KILLING'].includes(t.state);
                },
                30_000,
                `the killed task ${victim.taskId.id} to be seen dead`,
              ).catch((err: unknown) => violation(String(err instanceof Error ? err.message : err)));
            }
            break;
          }
          case 'bounce':
            await api(s, (c) => c.bounce(REQ), 'bounce');
            break;
        }
      } catch (err) {
        violation(`episode failed: ${err instanceof Error ? err.message : String(err)}`);
      }
      await killer;

      // Settled: no pending deploy, `instances` healthy tasks of the active deploy in the LB, nothing else live.
      const settled = await waitUntil(
        async () => {
          const p = await parent();
          if (p.pendingDeployState) return undefined;
          const tasks = await snapshot();
          const live = tasks.filter((t) => t.state !== 'TASK_FINISHED');
          const serving = live.filter((t) => !t.cleanup);
          if (serving.length !== instances || live.length !== instances) return undefined;
          if (!serving.every((t) => isHealthy(t) && inLb(t) && t.taskId.deployId === p.activeDeploy?.id)) return undefined;
          return { p, tasks: live };
        },
        120_000,
        `episode ${episodes} (${kind}) to settle`,
      ).catch((err: unknown) => {
        violation(String(err instanceof Error ? err.message : err));
        return undefined;
      });
      sampleLoop = false;
      sampling = false;
      await sampler;

      if (settled) {
        const { p, tasks } = settled;
        if (p.activeDeploy?.id !== expectActive) violation(`active deploy ${p.activeDeploy?.id}, expected ${expectActive}`);
        previousActive = active !== p.activeDeploy?.id ? active : previousActive;
        active = p.activeDeploy?.id ?? active;
        activeVersion = p.activeDeploy?.env?.VERSION ?? expectVersion;
        // One task per instance, 1..instances.
        const numbers = tasks.map((t) => t.taskId.instanceNo).sort((a, b) => a - b);
        if (JSON.stringify(numbers) !== JSON.stringify(Array.from({ length: instances }, (_, i) => i + 1))) {
          violation(`instances ${numbers.join(',')}, expected 1..${instances}`);
        }
        // The API's live tasks are exactly the live processes; nothing else carries a task's mark.
        // (A process that just ended may still be live in the API for the runtime's detection
        // delay; what still differs after a few seconds is a violation.)
        const LIVE = ['TASK_LAUNCHED', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_CLEANING', 'TASK_KILLING'];
        let current = tasks;
        let marked = markedTaskIds(prefix);
        const differs = () =>
          current.some((t) => !marked.has(t.taskId.id) || (t.pid !== undefined && !isRunning(t.pid))) ||
          [...marked.keys()].some((id) => !current.some((t) => t.taskId.id === id));
        for (let i = 0; i < 30 && differs(); i++) {
          await sleep(100);
          current = (await snapshot()).filter((t) => LIVE.includes(t.state));
          marked = markedTaskIds(prefix);
        }
        const apiIds = new Set(current.map((t) => t.taskId.id));
        const orphans = [...marked.keys()].filter((id) => !apiIds.has(id));
        const dead = current.filter((t) => !marked.has(t.taskId.id)).map((t) => t.taskId.id);
        if (orphans.length > 0)
          violation(`orphan processes of tasks ${orphans.join(', ')} (pids ${orphans.map((id) => marked.get(id)?.join('/')).join(', ')})`);
        if (dead.length > 0) violation(`live tasks without a process: ${dead.join(', ')}`);
        for (const t of current) {
          if (t.pid !== undefined && !isRunning(t.pid)) violation(`task ${t.taskId.id}: its pid ${t.pid} does not run`);
        }
        // The LB serves only the active version.
        const versions: Record<string, number> = {};
        for (let i = 0; i < 12; i++) {
          const res = await lbGet(s.lbUrl);
          let version = `${res.status}`;
          try {
            version = String((JSON.parse(res.body) as { version?: string }).version);
          } catch {
            // not JSON
          }
          versions[version] = (versions[version] ?? 0) + 1;
        }
        if (Object.keys(versions).length !== 1 || versions[activeVersion] === undefined) {
          violation(`the LB served ${JSON.stringify(versions)}, expected only ${activeVersion}`);
        }
      }
      if (minCapacity !== Infinity && minCapacity < floor) violation(`capacity fell to ${minCapacity} (floor ${floor}): ${minAt}`);

      // Requests through the LB that failed during this episode.
      const failed = traffic.failures.splice(0);
      for (const f of failed) {
        const excused = o.lb === 'builtin' && s.downtimes.some((d) => overlaps(f, d));
        if (excused) excusedFailures++;
        else if (kind === 'taskKill' && f.at >= episodeStart) killedTaskFailures++;
        else violation(`a request through the LB failed at +${f.at - started} ms: ${f.detail}`);
      }
      log(`  settled in ${Date.now() - episodeStart} ms; kills ${s.kills}; min capacity ${minCapacity}`);
      if (episodes % 25 === 0) {
        console.log(
          `  … ${episodes} episodes, ${s.kills} kills, ${violations.length} violations, ${((Date.now() - started) / 60_000).toFixed(1)} min`,
        );
      }
    }
  } finally {
    await traffic.stop();
    const last = traffic.failures.splice(0);
    for (const f of last) {
      const excused = o.lb === 'builtin' && s.downtimes.some((d) => overlaps(f, d));
      if (excused) excusedFailures++;
      else violations.push({ episode: episodes, kind: 'atomic', what: `a request through the LB failed: ${f.detail}` });
    }
    // Tear down: delete the request (its tasks stop), the scheduler, HAProxy, what is left.
    try {
      await api(s, (c) => c.deleteRequest(REQ), 'delete the request', 30_000);
      // Deleted, the request (and its task list) is gone: then no task of it may run any more.
      await waitUntil(
        async () => {
          const tasks = await s.client.requestTasks(REQ).catch((err: unknown) => {
            if (err instanceof FledgeApiError && err.status === 404) return [];
            throw err;
          });
          return tasks.length === 0 && markedTaskIds(prefix).size === 0;
        },
        60_000,
        'every task to stop',
      );
      const left = markedTaskIds(prefix);
      if (left.size > 0)
        violations.push({
          episode: episodes,
          kind: 'atomic',
          what: `processes left after the request was deleted: ${[...left.keys()].join(', ')}`,
        });
    } catch (err) {
      violations.push({ episode: episodes, kind: 'atomic', what: `could not delete the request: ${String(err)}` });
    }
    await s.stop();
    stopHaproxy(dataDir);
    await killSandboxTasks(dataDir).catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  }

  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  const downMs = s.downtimes.map((d) => d.to - d.from).sort((a, b) => a - b);
  const median = downMs.length > 0 ? downMs[Math.floor(downMs.length / 2)] : 0;
  console.log(
    [
      `soak done: seed ${o.seed}, lb ${o.lb}, ${minutes} min`,
      `kills ${s.kills}, episodes ${episodes} (${Object.entries(counts)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')})`,
      `requests through the LB: ${traffic.ok} ok, ${excusedFailures} failed while the scheduler (and with it the builtin LB) was down (median downtime ${median} ms), ${killedTaskFailures} in flight on a task killed on purpose`,
      `violations ${violations.length}`,
    ].join('\n'),
  );
  for (const v of violations.slice(0, 50)) console.log(`  episode ${v.episode} (${v.kind}): ${v.what}`);
  process.exitCode = violations.length > 0 ? 1 : 0;
}

/** The request was in flight (or sent) while the scheduler, and the builtin LB in it, was down. */
function overlaps(f: Sent, d: { from: number; to: number }): boolean {
  return f.at <= d.to + 50 && f.end >= d.from;
}

/** Task id → pids of the processes carrying a FLEDGE_TASK_ID mark that starts with `prefix`. */
function markedTaskIds(prefix: string): Map<string, number[]> {
  const found = new Map<string, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    let env: string;
    try {
      env = readFileSync(`/proc/${pid}/environ`, 'latin1');
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
    } catch {
      continue;
    }
    for (const entry of env.split('\0')) {
      if (!entry.startsWith(`${TASK_MARK}=${prefix}`)) continue;
      const id = entry.slice(TASK_MARK.length + 1);
      found.set(id, [...(found.get(id) ?? []), pid]);
    }
  }
  return found;
}

function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The managed HAProxy outlives Fledge by design: the soak stops the one it started. */
function stopHaproxy(dataDir: string): void {
  try {
    const pid = Number(
      readFileSync(path.join(dataDir, 'haproxy', 'haproxy.pid'), 'utf8')
        .trim()
        .split('\n')[0],
    );
    if (!Number.isInteger(pid) || pid <= 0 || !readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('haproxy')) return;
    process.kill(-pid, 'SIGKILL');
  } catch {
    // none running
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 2;
});
