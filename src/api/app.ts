// The HTTP API (api.md): Singularity's paths and shapes. Handlers parse, call the service
// (which records intent and wakes the loop) and render views; errors map in errors.ts.
import { existsSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Clock } from '../core/clock.ts';
import { badRequest, notFound } from '../core/errors.ts';
import type { EventBus, FledgeEvent } from '../core/events.ts';
import { isLive } from '../core/model.ts';
import type { HostRegistry } from '../hosts/index.ts';
import type { Balancer } from '../balancers/types.ts';
import { FledgeMetrics } from '../metrics/index.ts';
import type { Runtime, TaskHandle } from '../runtimes/types.ts';
import type { Store } from '../store/types.ts';
import { errorHandler, readJson } from './errors.ts';
import { registerHostRoutes } from './hosts.ts';
import { registerJobRoutes } from './job-routes.ts';
import type { Logger } from '../logger.ts';
import type { TrustList } from '../net/addresses.ts';
import { registerAuthRoutes } from './auth-routes.ts';
import type { Authenticator } from '../auth/authenticator.ts';
import { createGuard, identityOf, noteAudit, redactsItself, requestBody } from './guard.ts';
import { jsonArrayStream } from './json-stream.ts';
import { redactSecrets } from './redact.ts';
import { openApiDocument } from './openapi.ts';
import { UI_DIR } from '../paths.ts';
import type { FledgeService } from './service.ts';
import { parse, schemas } from './validate.ts';
import { registerCompatRoutes } from './compat-routes.ts';
import { requestOut, STATE_ZEROES, taskCleanupOut } from './singularity-shapes.ts';
import {
  deployHistoryView,
  groupTaskIds,
  pendingDeployView,
  preloadParents,
  type ParentsPreload,
  requestParent,
  taskHistoryOut,
  tasksOut,
  taskView,
} from './views.ts';
import type { DeployAction, DeployPlan, LeaderView, LogChunk, SchedulerView, StateCounts } from './types.ts';
import { trafficView, TRAFFIC_LIMITS } from './traffic-view.ts';

export interface AppDeps {
  store: Store;
  service: FledgeService;
  runtime: Runtime;
  /** the hosts tasks run on (GET /api/hosts, Singularity's /api/agents) */
  hosts?: HostRegistry;
  events: EventBus;
  clock: Clock;
  /** whether the server has a Docker host (for containerInfo DOCKER) */
  containers: boolean;
  logger: Logger;
  /** the built web UI (default: dist/ui of this checkout) */
  uiDir?: string;
  /** whether webhooks may target this URL (--webhook-allow); default any */
  webhookAllow?: (uri: URL) => boolean;
  security: AppSecurity;
  /** how often an idle event stream gets a ping (and its token is checked again); default 15 s */
  eventsPingMillis?: number;
  /** who leads and which schedulers share the store (GET /api/state) */
  cluster?: () => Promise<{ leader: LeaderView | null; schedulers: SchedulerView[] }>;
  /** the leader's balancer (traffic), undefined on a follower or without one */
  balancer?: () => Balancer | undefined;
  /** what the server runs as its balancer (builtin, haproxy, none) */
  balancerKind?: string;
  /** /metrics; made here when not given */
  metrics?: FledgeMetrics;
}

/** What guard.ts enforces in front of every route, and the API's own bounds. */
export interface AppSecurity {
  /** undefined: --no-auth */
  authenticator: Authenticator | undefined;
  /** the API's listen address (accepted as a Host) */
  bindHost: string;
  publicUrl?: string;
  allowedHosts: string[];
  allowedOrigins: string[];
  trustForwardedFrom: TrustList;
  maxBodyBytes: number;
  /** --max-instances: the most instances any body may set */
  maxInstances: number;
}

export function createApp(deps: AppDeps): Hono {
  const { store, service, runtime, events, clock } = deps;
  const app = new Hono();
  app.onError(errorHandler(deps.logger));
  app.use(
    '*',
    createGuard({
      authenticator: deps.security.authenticator,
      store,
      clock,
      logger: deps.logger,
      bindHost: deps.security.bindHost,
      ...(deps.security.publicUrl !== undefined ? { publicUrl: deps.security.publicUrl } : {}),
      allowedHosts: deps.security.allowedHosts,
      allowedOrigins: deps.security.allowedOrigins,
      trustForwardedFrom: deps.security.trustForwardedFrom,
      maxBodyBytes: deps.security.maxBodyBytes,
    }),
  );
  const { maxInstances } = deps.security;
  /** `instances` within --max-instances, checked wherever a body sets it. */
  const checkInstances = (field: string, instances: number | undefined) => {
    if (instances !== undefined && instances > maxInstances) {
      throw badRequest(`${field}: must be at most ${maxInstances} (the server's --max-instances)`, [{ field, rule: `<= ${maxInstances}` }]);
    }
  };
  const userOf = (c: Parameters<typeof identityOf>[0]) => identityOf(c)?.name;
  app.notFound((c) => c.json({ message: `No route for ${c.req.method} ${c.req.path}`, details: [] }, 404));

  const getRecord = async (id: string) => {
    const record = await store.getRequest(id);
    if (!record || record.state === 'DELETED') throw notFound(`Request ${id} not found`);
    return record;
  };
  const getTask = async (id: string) => {
    const task = await store.getTask(id);
    if (!task) throw notFound(`Task ${id} not found`);
    return task;
  };
  const optionalBody = async (c: Parameters<typeof readJson>[0]) => (requestBody(c).trim() === '' ? {} : await readJson(c));

  app.get('/health', (c) => c.json({ status: 'ok' }));

  // ---- requests ----
  app.post('/api/requests', async (c) => {
    const { value, warnings } = parse(schemas.request, await readJson(c));
    checkInstances('instances', value.instances);
    const record = await service.saveRequest(value);
    return c.json({ ...(await requestParent(store, record)), warnings });
  });
  app.get('/api/requests', async (c) => {
    const records = (await store.listRequests()).filter((r) => r.state !== 'DELETED');
    const pending = new Map((await store.listPending()).map((p) => [p.requestId, p]));
    const { redact } = redactsItself(c);
    // Per chunk: its requests' live tasks and last results, one query each; per request: its deploys.
    const body = jsonArrayStream<(typeof records)[number], ParentsPreload>(
      records,
      (r, preload) => requestParent(store, r, preload),
      redact ? redactSecrets : undefined,
      (chunk) =>
        preloadParents(
          store,
          chunk.map((r) => r.request.id),
          pending,
        ),
    );
    return c.body(body, 200, { 'Content-Type': 'application/json' });
  });
  app.get('/api/requests/request/:id', async (c) => c.json(await requestParent(store, await getRecord(c.req.param('id')))));
  app.delete('/api/requests/request/:id', async (c) => {
    parse(schemas.deleteRequest, await optionalBody(c));
    const record = await service.setState(c.req.param('id'), 'delete');
    // Singularity answers a delete with the SingularityRequest; Fledge's request parent alongside.
    return c.json({ ...requestOut(record.request), ...(await requestParent(store, record)) });
  });
  app.put('/api/requests/request/:id/scale', async (c) => {
    const { value, warnings } = parse(schemas.scale, await readJson(c));
    checkInstances('instances', value.instances);
    const record = await service.scale(c.req.param('id'), value, userOf(c));
    return c.json({ ...(await requestParent(store, record)), warnings });
  });
  for (const action of ['pause', 'unpause', 'bounce'] as const) {
    app.post(`/api/requests/request/:id/${action}`, async (c) => {
      const { value, warnings } = parse(schemas[action], await optionalBody(c));
      const record = await service.setState(c.req.param('id'), action, value, userOf(c));
      return c.json({ ...(await requestParent(store, record)), warnings });
    });
  }
  registerJobRoutes(app, { store, service, clock, webhookAllow: deps.webhookAllow ?? (() => true) });

  // ---- deploys ----
  app.post('/api/deploys', async (c) => {
    const { value, warnings } = parse(schemas.deployRequest(deps.containers), await readJson(c));
    checkInstances('updatedRequest.instances', value.updatedRequest?.instances);
    const { record, warnings: more } = await service.createDeploy(value, userOf(c));
    return c.json({ ...(await requestParent(store, record)), warnings: [...warnings, ...more] });
  });
  app.post('/api/deploys/plan', async (c) => {
    const { value, warnings } = parse(schemas.deployRequest(deps.containers), await readJson(c));
    checkInstances('updatedRequest.instances', value.updatedRequest?.instances);
    const plan = await service.planDeploy(value);
    return c.json({ ...plan, warnings: [...warnings, ...plan.warnings] } satisfies DeployPlan);
  });
  app.post('/api/requests/request/:id/rollback', async (c) => {
    const { value, warnings } = parse(schemas.rollback, await optionalBody(c));
    const { record, warnings: more, targetDeployId } = await service.rollback(c.req.param('id'), value.message, userOf(c), value.deployId);
    if (record.pendingDeployId) noteAudit(c, { deployId: record.pendingDeployId });
    return c.json({ ...(await requestParent(store, record)), rollbackTo: targetDeployId, warnings: [...warnings, ...more] });
  });
  app.get('/api/deploys/pending', async (c) => {
    const pending = await store.listPending();
    const users = await Promise.all(pending.map(async (p) => (await store.getDeployHistory(p.requestId, p.deployId))?.user));
    return c.json(pending.map((p, i) => pendingDeployView(p, users[i])));
  });
  app.delete('/api/deploys/deploy/:deployId/request/:requestId', async (c) => {
    const { deployId, requestId } = c.req.param();
    await service.deployIntent(requestId, deployId, { kind: 'cancel', at: clock.now() });
    return c.json(await requestParent(store, await getRecord(requestId)));
  });
  app.post('/api/deploys/update', async (c) => {
    const { value } = parse(schemas.updateDeploy, await readJson(c));
    checkInstances('targetActiveInstances', value.targetActiveInstances);
    await service.deployIntent(value.requestId, value.deployId, {
      kind: 'update',
      at: clock.now(),
      targetActiveInstances: value.targetActiveInstances,
    });
    return c.json(await requestParent(store, await getRecord(value.requestId)));
  });
  for (const kind of ['advance', 'reject'] as const) {
    app.post(`/api/deploys/${kind}`, async (c) => {
      const { value } = parse(schemas.deployDecision, await readJson(c));
      await service.deployIntent(value.requestId, value.deployId, {
        kind,
        at: clock.now(),
        ...(value.message ? { message: value.message } : {}),
      });
      return c.json(await requestParent(store, await getRecord(value.requestId)));
    });
  }

  // ---- history ----
  app.get('/api/history/request/:id/deploys', async (c) => {
    const id = c.req.param('id');
    const pending = await store.getPending(id);
    const entries = await store.listDeployHistory(id);
    if (entries.length === 0 && !(await store.getRequest(id))) throw notFound(`Request ${id} not found`);
    const actions = await deployActions(store, id);
    return c.json(await Promise.all(entries.map((e) => deployHistoryView(store, e, pending, actions.get(e.deployId)))));
  });
  app.get('/api/history/request/:id/deploy/:deployId', async (c) => {
    const { id, deployId } = c.req.param();
    const entry = await store.getDeployHistory(id, deployId);
    if (!entry) throw notFound(`Deploy ${deployId} of request ${id} not found`);
    const actions = await deployActions(store, id, deployId);
    return c.json(await deployHistoryView(store, entry, await store.getPending(id), actions.get(deployId)));
  });
  app.get('/api/history/task/:taskId', async (c) => c.json(await taskHistoryOut(store, await getTask(c.req.param('taskId')))));
  app.get('/api/history/request/:id/tasks', async (c) => {
    const tasks = await store.listTasks({ requestId: c.req.param('id'), limit: 200 });
    return c.json(tasks.filter((t) => !isLive(t.state)).map(taskView));
  });

  // ---- tasks ----
  app.get('/api/tasks/active', async (c) => c.json(await tasksOut(store, await store.listTasks({ live: true }))));
  app.get('/api/tasks/request/:requestId', async (c) => {
    await getRecord(c.req.param('requestId'));
    return c.json(await tasksOut(store, await store.listTasks({ requestId: c.req.param('requestId'), live: true })));
  });
  app.get('/api/tasks/ids/request/:requestId', async (c) => {
    await getRecord(c.req.param('requestId'));
    return c.json(groupTaskIds(await store.listTasks({ requestId: c.req.param('requestId'), live: true })));
  });
  app.get('/api/tasks/task/:taskId', async (c) => c.json((await tasksOut(store, [await getTask(c.req.param('taskId'))]))[0]));
  app.delete('/api/tasks/task/:taskId', async (c) => {
    const { value, warnings } = parse(schemas.killTask, await optionalBody(c));
    await service.killTask(c.req.param('taskId'), value.message, value.waitForReplacementTask ?? false);
    // Singularity answers a kill with the SingularityTaskCleanup; Fledge's task view alongside.
    const task = await getTask(c.req.param('taskId'));
    return c.json({ ...taskView(task), ...taskCleanupOut(task, userOf(c)), warnings });
  });
  app.get('/api/sandbox/:taskId/read', async (c) => {
    const task = await getTask(c.req.param('taskId'));
    const path = c.req.query('path') ?? 'stdout';
    if (path !== 'stdout' && path !== 'stderr')
      throw badRequest('path: must be stdout or stderr', [{ field: 'path', rule: 'stdout|stderr' }]);
    const offset = queryInt(c.req.query('offset'), 'offset', 0);
    const length = queryInt(c.req.query('length'), 'length', 65536);
    // tail=N: the last N bytes (at most 64 KiB), from a line start: why a task failed, at a glance
    const tail = c.req.query('tail') === undefined ? undefined : Math.min(queryInt(c.req.query('tail'), 'tail', 0), 65536);
    if (!task.handle) return c.json({ path, offset, data: '', nextOffset: offset } satisfies LogChunk);
    const handle = task.handle as TaskHandle;
    if (tail !== undefined) {
      const size = (await runtime.logs(handle, path, 0, 0)).size ?? 0;
      const start = Math.max(0, size - tail);
      const chunk = await runtime.logs(handle, path, start, tail);
      const cut = start > 0 ? chunk.data.indexOf('\n') + 1 : 0;
      const data = chunk.data.slice(cut);
      return c.json({
        path,
        offset: chunk.offset + Buffer.byteLength(chunk.data.slice(0, cut)),
        data,
        nextOffset: chunk.nextOffset,
        size,
      } satisfies LogChunk);
    }
    const chunk = await runtime.logs(handle, path, offset, Math.min(length, 1 << 20));
    return c.json({ path, offset: chunk.offset, data: chunk.data, nextOffset: chunk.nextOffset } satisfies LogChunk);
  });

  // ---- hosts ----
  registerHostRoutes(app, deps);

  // ---- the rest of Singularity's endpoints a pipeline uses ----
  registerCompatRoutes(app, { store, service, runtime, clock, userOf, getRecord, getTask, optionalBody });

  // ---- operations ----
  app.get('/api/state', async (c) => {
    const [requests, pending, tasks, cluster] = await Promise.all([
      store.listRequests(),
      store.listPending(),
      store.listTasks({ live: true }),
      deps.cluster?.(),
    ]);
    const count = (s: string) => requests.filter((r) => r.state === s).length;
    const hosts = deps.hosts?.list() ?? [];
    const hostCount = (s: string) => hosts.filter((h) => h.state === s).length;
    const agents = { active: hostCount('ACTIVE'), dead: hostCount('UNREACHABLE'), decommissioning: hostCount('DECOMMISSIONING') };
    const now = clock.now();
    const oldest = pending.reduce((min, p) => Math.min(min, p.startedAt), now);
    const provisioned = requests
      .filter((r) => r.state === 'ACTIVE')
      .map((r) => ({
        id: r.request.id,
        wanted: r.request.instances,
        live: tasks.filter((t) => t.taskId.requestId === r.request.id && !t.cleanup).length,
      }));
    return c.json({
      // SingularityState: every counter, 0 where it has no meaning here (no Mesos, no cooldown).
      ...STATE_ZEROES,
      activeRequests: count('ACTIVE'),
      pausedRequests: count('PAUSED'),
      cleaningRequests: count('DELETING'),
      allRequests: requests.filter((r) => r.state !== 'DELETED').length,
      activeTasks: tasks.length,
      launchingTasks: tasks.filter((t) => t.state === 'TASK_LAUNCHED' || t.state === 'TASK_STARTING').length,
      cleaningTasks: tasks.filter((t) => t.cleanup).length,
      numDeploys: pending.length,
      activeDeploys: pending.map((p) => ({ requestId: p.requestId, deployId: p.deployId, timestamp: p.startedAt })),
      oldestDeploy: pending.length > 0 ? now - oldest : 0,
      oldestDeployStep: pending.reduce((max, p) => Math.max(max, now - p.progress.stepStartedAt), 0),
      activeAgents: agents.active,
      activeSlaves: agents.active,
      deadAgents: agents.dead,
      deadSlaves: agents.dead,
      decommissioningAgents: agents.decommissioning,
      decommissioningSlaves: agents.decommissioning,
      decomissioningSlaves: agents.decommissioning,
      unknownAgents: 0,
      unknownSlaves: 0,
      overProvisionedRequestIds: provisioned.filter((p) => p.live > p.wanted).map((p) => p.id),
      underProvisionedRequestIds: provisioned.filter((p) => p.live < p.wanted).map((p) => p.id),
      overProvisionedRequests: provisioned.filter((p) => p.live > p.wanted).length,
      underProvisionedRequests: provisioned.filter((p) => p.live < p.wanted).length,
      authDatastoreHealthy: true,
      generatedAt: now,
      lastHeartbeatAt: now,
      // Fledge's own counters
      deletingRequests: count('DELETING'),
      pendingDeploys: pending.length,
      healthyTasks: groupTaskIds(tasks).healthy.length,
      waitingTasks: tasks.filter((t) => t.waitingReason).length,
      ...cluster,
    } satisfies StateCounts & Record<string, unknown>);
  });
  app.get('/api/openapi.json', (c) => c.json(openApiDocument()));

  const metrics =
    deps.metrics ??
    new FledgeMetrics({
      store,
      balancer: deps.balancer ?? (() => undefined),
      balancerKind: deps.balancerKind ?? 'none',
      leading: () => true,
      logger: deps.logger,
    });
  app.get('/metrics', async (c) => c.text(await metrics.render(), 200, { 'Content-Type': metrics.contentType }));

  // The live split and per-version rates of a request's traffic, from the leader's balancer.
  app.get('/api/requests/request/:id/traffic', async (c) => {
    const record = await getRecord(c.req.param('id'));
    const windowSeconds = queryInt(c.req.query('windowSeconds'), 'windowSeconds', TRAFFIC_LIMITS.defaultWindowSeconds);
    const stepSeconds = queryInt(c.req.query('stepSeconds'), 'stepSeconds', TRAFFIC_LIMITS.defaultStepSeconds);
    for (const [name, v, min, max] of [
      ['windowSeconds', windowSeconds, 1, TRAFFIC_LIMITS.maxWindowSeconds],
      ['stepSeconds', stepSeconds, 1, TRAFFIC_LIMITS.maxWindowSeconds],
    ] as const) {
      if (v < min || v > max) throw badRequest(`${name}: must be from ${min} to ${max}`, [{ field: name, rule: `${min}..${max}` }]);
    }
    const id = record.request.id;
    const [active, pendingDeploy, tasks] = await Promise.all([
      record.activeDeployId ? store.getDeploy(id, record.activeDeployId) : undefined,
      record.pendingDeployId ? store.getDeploy(id, record.pendingDeployId) : undefined,
      store.listTasks({ requestId: id, live: true }),
    ]);
    const serviceId = (pendingDeploy ?? active)?.loadBalancerServiceIdOverride ?? id;
    const balancer = deps.balancer?.();
    const traffic = balancer
      ? await balancer.traffic(serviceId, { windowMs: windowSeconds * 1000, stepMs: stepSeconds * 1000 })
      : undefined;
    const leader = traffic ? undefined : await deps.cluster?.().catch(() => undefined);
    return c.json(
      trafficView({
        record,
        serviceId,
        tasks,
        traffic,
        balancerKind: deps.balancerKind ?? 'none',
        windowSeconds,
        stepSeconds,
        leaderUrl: (leader?.leader as { url?: string; self?: boolean } | null | undefined)?.url,
      }),
    );
  });

  app.get('/api/events', (c) => {
    // A read token's events show env values as ***, like its answers.
    const identity = identityOf(c);
    const redact = identity?.role === 'read';
    /** A stream outlives the check at its start: a revoked token's stream ends at the next ping. */
    const revoked = async () => identity?.tokenHash !== undefined && !(await store.findTokenByHash(identity.tokenHash));
    return streamSSE(c, async (stream) => {
      const queue: FledgeEvent[] = [];
      let notify: (() => void) | undefined;
      const unsubscribe = events.subscribe((e) => {
        queue.push(e);
        notify?.();
      });
      stream.onAbort(() => {
        unsubscribe();
        notify?.();
      });
      await stream.writeSSE({ event: 'hello', data: JSON.stringify({ at: clock.now() }) });
      while (!stream.aborted) {
        const event = queue.shift();
        if (!event) {
          await new Promise<void>((resolve) => {
            notify = resolve;
            setTimeout(resolve, deps.eventsPingMillis ?? 15_000).unref();
          });
          notify = undefined;
          if (queue.length === 0 && !stream.aborted) {
            if (await revoked()) break;
            await stream.writeSSE({ event: 'ping', data: '{}' });
          }
          continue;
        }
        const data = event.type === 'TASK' ? { ...event, task: taskView(event.task) } : event;
        await stream.writeSSE({ event: event.type.toLowerCase(), data: JSON.stringify(redact ? redactSecrets(data) : data) });
      }
      unsubscribe();
    });
  });

  registerAuthRoutes(app, { store, authenticator: deps.security.authenticator, clock });

  serveUi(app, deps.uiDir ?? UI_DIR);
  return app;
}

/** Paths that belong to the API, never to the UI's SPA fallback. */
const NOT_UI = /^\/(?:api|metrics|health)(?:\/|$)/;

/**
 * The web UI (src/ui) at `/`: its built files, and index.html for every other GET that is not
 * an API path (client-side routes, so deep links survive a reload). Without a build, `/` says
 * how to make one.
 */
function serveUi(app: Hono, uiDir: string): void {
  const index = `${uiDir.replace(/\/+$/, '')}/index.html`;
  // serveStatic resolves its root against the working directory.
  const root = relative(process.cwd(), uiDir) || '.';
  const isFile = (path: string) => {
    try {
      return statSync(join(uiDir, path)).isFile();
    } catch {
      return false;
    }
  };
  // Made on first use: serveStatic complains at creation when its root does not exist yet.
  let serve: ReturnType<typeof serveStatic> | undefined;
  const files = () =>
    (serve ??= serveStatic({
      root,
      // Client-side routes (and anything else that is not a file) get the app's index.html.
      rewriteRequestPath: (path) => (isFile(path) ? path : '/index.html'),
      onFound: (path, c) => {
        c.header('Cache-Control', /[/\\]assets[/\\]/.test(path) ? 'public, max-age=31536000, immutable' : 'no-cache');
      },
    }));
  app.get('*', async (c, next) => {
    if (NOT_UI.test(c.req.path)) return next();
    // Checked per request, so a build made while the server runs is picked up.
    if (!existsSync(index)) {
      return c.html(
        '<!doctype html><meta charset="utf-8"><title>Fledge</title><h1>The Fledge web UI is not built</h1>' +
          '<p>Run <code>npm run build:ui</code> (<code>npm ci</code> builds it too) and reload this page. ' +
          'The API answers meanwhile, e.g. <a href="/api/requests">/api/requests</a>.</p>',
        503,
      );
    }
    // A missing hashed asset is a 404, not the app.
    if (c.req.path.startsWith('/assets/') && !isFile(c.req.path)) return next();
    return files()(c, next);
  });
}

const DEPLOY_ACTIONS: Record<string, DeployAction['action']> = {
  'POST /api/deploys/advance': 'advance',
  'POST /api/deploys/reject': 'reject',
  'POST /api/deploys/update': 'update',
};

/** Who advanced, rejected, updated or cancelled a request's deploys (the audit log's successes), by deploy. */
async function deployActions(store: Store, requestId: string, deployId?: string): Promise<Map<string, DeployAction[]>> {
  const records = await store.listAudit({ requestId, ...(deployId !== undefined ? { deployId } : {}), succeeded: true, limit: 1000 });
  const out = new Map<string, DeployAction[]>();
  for (const r of records.reverse()) {
    if (r.deployId === undefined) continue;
    const action =
      DEPLOY_ACTIONS[`${r.method} ${r.path}`] ??
      (r.method === 'DELETE' && r.path.startsWith('/api/deploys/deploy/') ? 'cancel' : undefined);
    if (!action) continue;
    const list = out.get(r.deployId) ?? [];
    list.push({ action, at: r.at, ...(r.tokenName !== undefined ? { user: r.tokenName } : {}) });
    out.set(r.deployId, list);
  }
  return out;
}

function queryInt(raw: string | undefined, name: string, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw badRequest(`${name}: must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}`, [{ field: name, rule: 'integer >= 0' }]);
  }
  return n;
}
