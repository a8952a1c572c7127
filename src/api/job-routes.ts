// Routes of runs (Singularity's run-now, run lookup and task tracker) and webhooks. Who may call
// each is in access.ts (runs: deploy; tracking: read; webhooks, reads included: admin).
import type { Hono } from 'hono';
import type { Clock } from '../core/clock.ts';
import { badRequest, conflict, notFound } from '../core/errors.ts';
import { webhookId, type Webhook } from '../core/webhooks.ts';
import type { Store } from '../store/types.ts';
import { readJson } from './errors.ts';
import { identityOf, requestBody } from './guard.ts';
import { pendingRequestView, taskStateView, webhookView } from './job-views.ts';
import type { FledgeService } from './service.ts';
import { parse, schemas } from './validate.ts';
import { requestParent } from './views.ts';

export interface JobRouteDeps {
  store: Store;
  service: FledgeService;
  clock: Clock;
  /** hosts and CIDR ranges webhooks may target; empty: any */
  webhookAllow: (uri: URL) => boolean;
}

const QUEUE_PAGE = 1000;

export function registerJobRoutes(app: Hono, deps: JobRouteDeps): void {
  const { store, service, clock } = deps;
  const getRecord = async (id: string) => {
    const record = await store.getRequest(id);
    if (!record || record.state === 'DELETED') throw notFound(`Request ${id} not found`);
    return record;
  };

  // ---- runs ----
  app.post('/api/requests/request/:id/run', async (c) => {
    const raw = requestBody(c).trim() === '' ? {} : await readJson(c);
    const { value, warnings } = parse(schemas.run, raw);
    const { record, queued } = await service.runNow(c.req.param('id'), value, identityOf(c)?.name);
    // SingularityPendingRequestParent: the request parent and the pending request.
    return c.json({ ...(await requestParent(store, record)), pendingRequest: pendingRequestView(record, queued), warnings });
  });
  app.get('/api/requests/request/:id/run/:runId', async (c) => {
    const { id, runId } = c.req.param();
    await getRecord(id);
    const task = await store.findTaskByRunId(id, runId);
    if (!task) throw notFound(`No task of request ${id} has run id ${runId} (yet: a queued run has none)`);
    return c.json(task.taskId);
  });
  app.get('/api/requests/queued/pending', async (c) => {
    const records = (await store.listRequests()).filter((r) => r.state !== 'DELETED');
    return c.json(records.flatMap((r) => (r.jobs?.queue ?? []).map((q) => pendingRequestView(r, q))));
  });
  app.get('/api/track/run/:requestId/:runId', async (c) => {
    const { requestId, runId } = c.req.param();
    const record = await getRecord(requestId);
    const view = taskStateView(record, runId, await store.findTaskByRunId(requestId, runId));
    if (!view) throw notFound(`Run ${runId} of request ${requestId} not found`);
    return c.json(view);
  });
  app.get('/api/track/task/:taskId', async (c) => {
    const task = await store.getTask(c.req.param('taskId'));
    if (!task) throw notFound(`Task ${c.req.param('taskId')} not found`);
    const record = await getRecord(task.taskId.requestId);
    return c.json(taskStateView(record, task.run?.runId ?? '', task));
  });

  // ---- webhooks ----
  app.get('/api/webhooks', async (c) => c.json((await store.listWebhooks()).map(webhookView)));
  app.get('/api/webhooks/summary', async (c) => {
    const [hooks, counts] = await Promise.all([store.listWebhooks(), store.countDeliveries()]);
    return c.json(hooks.map((w) => ({ webhook: webhookView(w), queueSize: counts[w.id] ?? 0 })));
  });
  app.post('/api/webhooks', async (c) => {
    const { value } = parse(schemas.webhook, await readJson(c));
    const url = new URL(value.uri);
    if (!deps.webhookAllow(url)) {
      throw badRequest(`uri: ${url.hostname} is not an address this server may send webhooks to (--webhook-allow)`, [
        { field: 'uri', rule: 'a host allowed by --webhook-allow' },
      ]);
    }
    const user = identityOf(c)?.name;
    const hook: Webhook = {
      id: webhookId(value.type, value.uri),
      uri: value.uri,
      type: value.type,
      timestamp: clock.now(),
      ...(user !== undefined ? { user } : {}),
      ...(value.secret ? { secret: value.secret } : {}),
      ...(value.events ? { events: value.events } : {}),
    };
    const created = await store.saveWebhook(hook);
    return c.json(created ? 'CREATED' : 'EXISTED');
  });
  const remove = async (id: string | undefined) => {
    if (!id) throw badRequest('webhookId: is required', [{ field: 'webhookId', rule: 'required' }]);
    return (await store.deleteWebhook(id)) ? 'DELETED' : 'DIDNT_EXIST';
  };
  app.delete('/api/webhooks', async (c) => c.json(await remove(c.req.query('webhookId'))));
  app.delete('/api/webhooks/:webhookId', async (c) => c.json(await remove(c.req.param('webhookId'))));
  for (const type of ['request', 'deploy', 'task'] as const) {
    const queued = async (id: string | undefined) => {
      if (!id) throw badRequest('webhookId: is required', [{ field: 'webhookId', rule: 'required' }]);
      const hook = (await store.listWebhooks()).find((w) => w.id === id);
      if (!hook) throw notFound(`Webhook ${id} not found`);
      if (hook.type.toLowerCase() !== type) throw conflict(`Webhook ${id} is a ${hook.type} webhook`);
      return (await store.listDeliveries(id, QUEUE_PAGE)).map((d) => JSON.parse(d.body) as unknown);
    };
    app.get(`/api/webhooks/${type}`, async (c) => c.json(await queued(c.req.query('webhookId'))));
    app.get(`/api/webhooks/${type}/:webhookId`, async (c) => c.json(await queued(c.req.param('webhookId'))));
  }
}
