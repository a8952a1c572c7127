// Hosts in the API: Fledge's own view (/api/hosts) and Singularity's agent endpoints
// (/api/agents, /api/slaves) in SingularityAgent's shape, over one registry.
import type { HostView } from './types.ts';
import type { Hono } from 'hono';
import { badRequest, notFound } from '../core/errors.ts';
import { isLive, type TaskRecord } from '../core/model.ts';
import { DEFAULT_RACK, hostOf } from '../core/placement.ts';
import { ADMIN_STATES, type HostAction, type HostRegistry, type HostStatus } from '../hosts/index.ts';
import type { Store } from '../store/types.ts';
import { readJson } from './errors.ts';
import { requestBody } from './guard.ts';
import { parse, schemas } from './validate.ts';

/** Live tasks by the host they run on or were placed on (a task no host took yet is on none). */
export function tasksByHost(tasks: TaskRecord[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const t of tasks) {
    const host = isLive(t.state) ? hostOf(t) : undefined;
    if (host === undefined) continue;
    out.set(host, [...(out.get(host) ?? []), t.taskId.id]);
  }
  return out;
}

export function hostView(s: HostStatus, tasks: string[]): HostView {
  const d = s.definition;
  return {
    id: d.id,
    kind: d.kind,
    runtimes: [d.kind],
    address: d.address,
    ...(d.endpoint ? { endpoint: d.endpoint } : {}),
    state: s.state,
    adminState: s.record.current,
    firstSeenAt: s.record.firstSeenAt,
    reachability: s.reachability,
    capacity: s.capacity
      ? { cpus: s.capacity.cpus, memoryMb: s.capacity.memoryMb, ports: { ...d.portRange, count: d.portRange.to - d.portRange.from + 1 } }
      : null,
    reserved: { cpus: s.usage.cpus, memoryMb: s.usage.memoryMb, ports: s.usage.ports },
    tasks,
    attributes: d.attributes,
    ...(d.reservedAttributes && Object.keys(d.reservedAttributes).length > 0 ? { reservedAttributes: d.reservedAttributes } : {}),
    rackId: rackOf(s),
  };
}

const rackOf = (s: HostStatus) => s.definition.attributes.rack ?? DEFAULT_RACK;

/**
 * SingularityAgent. Singularity has no UNREACHABLE: a host that does not answer reads DEAD (an
 * agent Mesos lost), with Fledge's own state beside it.
 */
export function agentView(s: HostStatus) {
  const d = s.definition;
  const current = s.record.current;
  return {
    id: d.id,
    firstSeenAt: s.record.firstSeenAt,
    currentState: {
      objectId: d.id,
      state: s.state === 'UNREACHABLE' ? 'DEAD' : current.state,
      timestamp: current.timestamp,
      ...(current.user !== undefined ? { user: current.user } : {}),
      message: s.state === 'UNREACHABLE' ? `UNREACHABLE: ${s.reachability.lastError ?? 'no answer'}` : current.message,
    },
    host: d.address,
    rackId: rackOf(s),
    attributes: d.attributes,
    resources: {
      ...(s.capacity ? { cpus: s.capacity.cpus, mem: s.capacity.memoryMb } : {}),
      ports: `[${d.portRange.from}-${d.portRange.to}]`,
    },
    fledgeState: s.state,
  };
}

const history = (s: HostStatus) => s.record.history.map((u) => ({ objectId: s.definition.id, ...u }));

const SINGULARITY_STATES = new Set<string>([...ADMIN_STATES, 'DEAD', 'MISSING_ON_STARTUP', 'STARTING_DECOMMISSION']);

export function registerHostRoutes(app: Hono, deps: { store: Store; hosts?: HostRegistry }): void {
  const registry = () => {
    if (!deps.hosts) throw notFound('This server has no host registry');
    return deps.hosts;
  };
  const status = (id: string) => {
    const s = registry().get(id);
    if (!s) throw notFound(`Host ${id} not found`);
    return s;
  };
  const liveTasks = async () => tasksByHost(await deps.store.listTasks({ live: true }));
  // The guard has read the body (size-limited): it is there, not in the request stream.
  const optionalBody = async (c: Parameters<typeof readJson>[0]) => (requestBody(c).trim() === '' ? {} : await readJson(c));
  const change = async (c: Parameters<typeof readJson>[0], id: string, action: HostAction) => {
    const { value, warnings } = parse(schemas.hostChange, await optionalBody(c));
    return { status: await registry().change(id, action, value.message), warnings };
  };

  app.get('/api/hosts', async (c) => {
    const tasks = await liveTasks();
    return c.json(
      registry()
        .list()
        .map((s) => hostView(s, tasks.get(s.definition.id) ?? [])),
    );
  });
  app.get('/api/hosts/:id', async (c) => {
    const s = status(c.req.param('id'));
    return c.json(hostView(s, (await liveTasks()).get(s.definition.id) ?? []));
  });

  for (const [base, item] of [
    ['/api/agents', 'agent'],
    ['/api/slaves', 'slave'],
  ] as const) {
    app.get(base, (c) => {
      const state = c.req.query('state');
      if (state !== undefined && !SINGULARITY_STATES.has(state)) {
        throw badRequest(`state: must be one of ${[...SINGULARITY_STATES].join(', ')}`, [{ field: 'state', rule: 'a MachineState' }]);
      }
      const agents = registry().list().map(agentView);
      return c.json(state === undefined ? agents : agents.filter((a) => a.currentState.state === state));
    });
    app.get(`${base}/${item}/:id`, (c) => c.json(history(status(c.req.param('id')))));
    app.get(`${base}/${item}/:id/details`, (c) => c.json(agentView(status(c.req.param('id')))));
  }

  for (const action of ['decommission', 'activate', 'freeze'] as const) {
    app.post(`/api/hosts/:id/${action}`, async (c) => {
      const { status: s, warnings } = await change(c, c.req.param('id'), action);
      return c.json({ ...hostView(s, (await liveTasks()).get(s.definition.id) ?? []), warnings });
    });
    for (const [base, item] of [
      ['/api/agents', 'agent'],
      ['/api/slaves', 'slave'],
    ] as const) {
      app.post(`${base}/${item}/:id/${action}`, async (c) => {
        const { status: s, warnings } = await change(c, c.req.param('id'), action);
        return c.json({ ...agentView(s), warnings });
      });
    }
  }
}
