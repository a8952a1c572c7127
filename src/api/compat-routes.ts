// The rest of Singularity's endpoints a deploy pipeline or its UI calls: request lists by
// state, task ids and counts, task-id histories, request history (from the audit log), the
// sandbox browser, skip-healthchecks, exit-cooldown and the expiring-action DELETEs.
import { createReadStream, lstatSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import type { Hono } from 'hono';
import type { Clock } from '../core/clock.ts';
import { badRequest, notFound } from '../core/errors.ts';
import { isLive, type ExpiringKind, type RequestRecord, type TaskRecord } from '../core/model.ts';
import type { Runtime } from '../runtimes/types.ts';
import type { Store } from '../store/types.ts';
import { readJson } from './errors.ts';
import type { FledgeService } from './service.ts';
import { requestOut, taskCleanupOut, taskIdHistoryFields } from './singularity-shapes.ts';
import { parse, schemas } from './validate.ts';
import { groupTaskIds, requestParent, taskView } from './views.ts';

type Ctx = Parameters<typeof readJson>[0];

export interface CompatDeps {
  store: Store;
  service: FledgeService;
  runtime: Runtime;
  clock: Clock;
  userOf: (c: Ctx) => string | undefined;
  getRecord: (id: string) => Promise<RequestRecord>;
  getTask: (id: string) => Promise<TaskRecord>;
  optionalBody: (c: Ctx) => Promise<unknown>;
}

/** Singularity's request states for the list endpoints (Fledge has no cooldown: its crash-loop backoff is per instance). */
const LISTS = {
  active: (r: RequestRecord) => r.state === 'ACTIVE' || r.state === 'DEPLOYING_TO_UNPAUSE',
  paused: (r: RequestRecord) => r.state === 'PAUSED',
  cooldown: (r: RequestRecord) => r.state === 'ACTIVE' && !!r.backoff && Object.keys(r.backoff).length > 0,
  finished: (r: RequestRecord) => r.state === 'FINISHED',
} as const;

const HISTORY_LIMIT = 1000;

/** SingularityTaskIdHistory, with Fledge's task view alongside. */
const taskIdHistory = (t: TaskRecord) => ({ ...taskView(t), taskId: t.taskId, ...taskIdHistoryFields(t) });

/** The audit log's successful calls on a request, as Singularity's request history events. */
const REQUEST_EVENTS: [RegExp, string, string][] = [
  [/^POST \/api\/requests$/, 'UPDATED', 'saved'],
  [/^DELETE \/api\/requests\/request\/[^/]+$/, 'DELETING', 'deleted'],
  [/^PUT \/api\/requests\/request\/[^/]+\/scale$/, 'SCALED', 'scaled'],
  [/^DELETE \/api\/requests\/request\/[^/]+\/scale$/, 'SCALE_REVERTED', 'expiring scale cancelled'],
  [/^POST \/api\/requests\/request\/[^/]+\/pause$/, 'PAUSED', 'paused'],
  [/^POST \/api\/requests\/request\/[^/]+\/unpause$/, 'UNPAUSED', 'unpaused'],
  [/^POST \/api\/requests\/request\/[^/]+\/bounce$/, 'BOUNCED', 'bounced'],
  [/^POST \/api\/requests\/request\/[^/]+\/exit-cooldown$/, 'EXITED_COOLDOWN', 'cooldown exited'],
  [/^PUT \/api\/requests\/request\/[^/]+\/skip-healthchecks$/, 'UPDATED', 'skipHealthchecks changed'],
];

export function registerCompatRoutes(app: Hono, d: CompatDeps): void {
  const { store, service } = d;
  const liveRequests = async () => (await store.listRequests()).filter((r) => r.state !== 'DELETED');

  app.get('/api/requests/ids', async (c) => c.json((await liveRequests()).map((r) => r.request.id)));
  for (const [name, keep] of Object.entries(LISTS)) {
    app.get(`/api/requests/${name}`, async (c) => {
      const records = (await liveRequests()).filter(keep);
      return c.json(await Promise.all(records.map((r) => requestParent(store, r))));
    });
  }
  app.get('/api/requests/request/:id/simple', async (c) => c.json(await requestParent(store, await d.getRecord(c.req.param('id')))));

  app.put('/api/requests/request/:id/skip-healthchecks', async (c) => {
    const { value, warnings } = parse(schemas.skipHealthchecks, await readJson(c));
    const record = await service.skipHealthchecks(c.req.param('id'), value, d.userOf(c));
    return c.json({ ...(await requestParent(store, record)), warnings });
  });
  app.post('/api/requests/request/:id/exit-cooldown', async (c) => {
    const { warnings } = parse(schemas.exitCooldown, await d.optionalBody(c));
    const record = await service.exitCooldown(c.req.param('id'));
    return c.json({ ...(await requestParent(store, record)), warnings });
  });
  // Singularity's task priority ranks Mesos offers; Fledge places tasks without ranking them, so
  // a priority would be stored and never acted on: refused, saying so, the request unchanged.
  for (const method of ['put', 'delete'] as const) {
    app[method]('/api/requests/request/:id/priority', async (c) => {
      await d.getRecord(c.req.param('id'));
      throw badRequest(
        'priority: task priority is not supported by Fledge (it places tasks without ranking them, so there is nothing to preempt); the request is unchanged',
        [{ field: 'priority', rule: 'not supported' }],
      );
    });
  }
  const expiring: [string, ExpiringKind][] = [
    ['scale', 'scale'],
    ['pause', 'pause'],
    ['bounce', 'bounce'],
    ['skip-healthchecks', 'skipHealthchecks'],
  ];
  for (const [path, kind] of expiring) {
    app.delete(`/api/requests/request/:id/${path}`, async (c) => {
      const record = await service.cancelExpiring(c.req.param('id'), kind);
      return c.json(await requestParent(store, record));
    });
  }

  // ---- tasks ----
  app.get('/api/tasks/active/ids', async (c) => c.json((await store.listTasks({ live: true })).map((t) => t.taskId)));
  app.get('/api/tasks/counts/request/:requestId', async (c) => {
    const id = c.req.param('requestId');
    await d.getRecord(id);
    const groups = groupTaskIds(await store.listTasks({ requestId: id, live: true }));
    return c.json({
      requestId: id,
      active: groups.healthy.length + groups.notYetHealthy.length,
      pending: groups.pending.length,
      cleaning: groups.cleaning.length,
    });
  });
  app.get('/api/tasks/task/:taskId/cleanup', async (c) => {
    const task = await d.getTask(c.req.param('taskId'));
    const cleanup = isLive(task.state) ? taskCleanupOut(task) : undefined;
    if (!cleanup) throw notFound(`Task ${task.taskId.id} is not being cleaned up`);
    return c.json(cleanup);
  });

  // ---- history ----
  app.get('/api/history/request/:id/tasks/active', async (c) => {
    const id = c.req.param('id');
    await d.getRecord(id);
    return c.json((await store.listTasks({ requestId: id, live: true })).map(taskIdHistory));
  });
  for (const which of ['active', 'inactive'] as const) {
    app.get(`/api/history/request/:id/deploy/:deployId/tasks/${which}`, async (c) => {
      const { id, deployId } = c.req.param();
      if (!(await store.getDeployHistory(id, deployId))) throw notFound(`Deploy ${deployId} of request ${id} not found`);
      const tasks = await store.listTasks({ requestId: id, deployId, ...(which === 'active' ? { live: true } : {}), limit: HISTORY_LIMIT });
      return c.json(tasks.filter((t) => isLive(t.state) === (which === 'active')).map(taskIdHistory));
    });
  }
  app.get('/api/history/request/:id/requests', async (c) => {
    const id = c.req.param('id');
    const record = await store.getRequest(id);
    if (!record) throw notFound(`Request ${id} not found`);
    const audit = await store.listAudit({ requestId: id, succeeded: true, limit: HISTORY_LIMIT });
    // Newest first, as Singularity lists it; the oldest save is the creation.
    const created = [...audit].reverse().find((x) => x.method === 'POST' && x.path === '/api/requests');
    const events = audit.flatMap((a) => {
      const key = `${a.method} ${a.path}`;
      const match = REQUEST_EVENTS.find(([re]) => re.test(key));
      if (!match) return [];
      const first = a === created;
      return [
        {
          // Fledge keeps no copy of each version of a request: every event carries the request as it is now.
          request: requestOut(record.request),
          eventType: first ? 'CREATED' : match[1],
          createdAt: a.at,
          ...(a.tokenName !== undefined ? { user: a.tokenName } : {}),
          message: match[2],
        },
      ];
    });
    return c.json(events);
  });

  // ---- sandbox ----
  app.get('/api/sandbox/:taskId/browse', async (c) => {
    const task = await d.getTask(c.req.param('taskId'));
    const { root, path } = sandboxPath(task, c.req.query('path'));
    let entries: string[];
    try {
      if (!statSync(path).isDirectory())
        throw badRequest(`path: ${c.req.query('path')} is a file; download it instead`, [{ field: 'path', rule: 'a folder' }]);
      entries = readdirSync(path).slice(0, 10_000);
    } catch (e) {
      if ((e as { status?: number }).status) throw e;
      throw notFound(`No folder ${c.req.query('path') ?? ''} in the sandbox of task ${task.taskId.id}`);
    }
    const files = entries.flatMap((name) => {
      try {
        const s = lstatSync(join(path, name));
        return [{ name, size: s.size, mtime: Math.floor(s.mtimeMs / 1000), mode: modeString(s.mode, s.isDirectory(), s.isSymbolicLink()) }];
      } catch {
        return [];
      }
    });
    const host = task.taskId.host;
    const current = relative(root, path);
    return c.json({ files, fullPathToRoot: root, currentDirectory: current, agentHostname: host, slaveHostname: host });
  });
  app.get('/api/sandbox/:taskId/download', async (c) => {
    const task = await d.getTask(c.req.param('taskId'));
    const raw = c.req.query('path');
    if (raw === undefined || raw === '') throw badRequest('path: the file to download is required', [{ field: 'path', rule: 'required' }]);
    const { path } = sandboxPath(task, raw);
    let size: number;
    try {
      const s = statSync(path);
      if (!s.isFile()) throw new Error('not a file');
      size = s.size;
    } catch {
      throw notFound(`No file ${raw} in the sandbox of task ${task.taskId.id}`);
    }
    const body = Readable.toWeb(createReadStream(path)) as ReadableStream;
    return new Response(body, {
      headers: {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(size),
        'Content-Disposition': `attachment; filename="${basename(path).replace(/["\\\r\n]/g, '_')}"`,
      },
    });
  });
}

/**
 * A path inside the task's sandbox, with symlinks resolved: anything that leads outside it
 * (`..`, an absolute path, a link out) is a 400, so the sandbox browser reads nothing else.
 */
function sandboxPath(task: TaskRecord, raw: string | undefined): { root: string; path: string } {
  const sandbox = typeof task.handle?.sandbox === 'string' ? task.handle.sandbox : undefined;
  if (!sandbox) throw notFound(`Task ${task.taskId.id} has no sandbox (it has not started)`);
  let root: string;
  try {
    root = realpathSync(sandbox);
  } catch {
    throw notFound(`The sandbox of task ${task.taskId.id} is not on this server (it was removed, or the task runs on another host)`);
  }
  const asked = (raw ?? '').replace(/^\/+/, '');
  if (asked.length > 4096 || asked.includes('\0'))
    throw badRequest('path: at most 4096 characters, no NUL', [{ field: 'path', rule: 'bounded' }]);
  const outside = () => badRequest(`path: ${raw} is outside the task's sandbox`, [{ field: 'path', rule: 'inside the sandbox' }]);
  const joined = join(root, asked);
  if (joined !== root && !joined.startsWith(root + sep)) throw outside();
  let real = joined;
  try {
    real = realpathSync(joined);
  } catch {
    return { root, path: joined };
  }
  if (real !== root && !real.startsWith(root + sep)) throw outside();
  return { root, path: real };
}

function modeString(mode: number, dir: boolean, link: boolean): string {
  const bits = ['r', 'w', 'x'];
  let out = link ? 'l' : dir ? 'd' : '-';
  for (let i = 8; i >= 0; i--) out += mode & (1 << i) ? bits[(8 - i) % 3] : '-';
  return out;
}
