// The OpenAPI document, generated from the same zod schemas that validate input.
import { toJsonSchema } from './schemas/index.ts';

type Op = { summary: string; body?: string; params?: string[] };

const OPS: Record<string, Partial<Record<'get' | 'post' | 'put' | 'delete', Op>>> = {
  '/api/requests': { get: { summary: 'List requests' }, post: { summary: 'Create or update a request', body: 'RequestInput' } },
  '/api/requests/request/{id}': {
    get: { summary: 'Get a request', params: ['id'] },
    delete: { summary: 'Delete a request', params: ['id'], body: 'DeleteRequestBody' },
  },
  '/api/requests/request/{id}/scale': { put: { summary: 'Scale a request', params: ['id'], body: 'ScaleBody' } },
  '/api/requests/request/{id}/pause': { post: { summary: 'Pause a request', params: ['id'], body: 'PauseBody' } },
  '/api/requests/request/{id}/unpause': { post: { summary: 'Unpause a request', params: ['id'], body: 'UnpauseBody' } },
  '/api/requests/request/{id}/bounce': { post: { summary: 'Replace every task, new before old', params: ['id'], body: 'BounceBody' } },
  '/api/deploys': { post: { summary: 'Start a deploy', body: 'DeployBody' } },
  '/api/deploys/plan': { post: { summary: 'Dry run of a deploy: steps, LB membership, waits, ETA; stores nothing', body: 'DeployBody' } },
  '/api/requests/request/{id}/rollback': {
    post: { summary: "Atomic deploy of the previous successful deploy's spec", params: ['id'], body: 'RollbackBody' },
  },
  '/api/deploys/pending': { get: { summary: 'Pending deploys with progress' } },
  '/api/deploys/deploy/{deployId}/request/{requestId}': {
    delete: { summary: 'Cancel a pending deploy', params: ['deployId', 'requestId'] },
  },
  '/api/deploys/update': { post: { summary: 'Jump a pending deploy to another target', body: 'UpdateDeployBody' } },
  '/api/deploys/advance': { post: { summary: 'Approve the current step', body: 'DeployDecisionBody' } },
  '/api/deploys/reject': { post: { summary: 'Fail the current step', body: 'DeployDecisionBody' } },
  '/api/history/request/{id}/deploys': { get: { summary: 'Past deploys with results', params: ['id'] } },
  '/api/history/request/{id}/deploy/{deployId}': {
    get: { summary: 'One deploy with result, progress and decision log', params: ['id', 'deployId'] },
  },
  '/api/history/task/{taskId}': { get: { summary: 'A task, finished or not', params: ['taskId'] } },
  '/api/tasks/active': { get: { summary: 'Live tasks' } },
  '/api/tasks/request/{requestId}': { get: { summary: "A request's live tasks", params: ['requestId'] } },
  '/api/tasks/ids/request/{requestId}': { get: { summary: "A request's task ids by state", params: ['requestId'] } },
  '/api/tasks/task/{taskId}': {
    get: { summary: 'A task', params: ['taskId'] },
    delete: { summary: 'Kill a task', params: ['taskId'], body: 'KillTaskBody' },
  },
  '/api/sandbox/{taskId}/read': { get: { summary: 'Read stdout or stderr', params: ['taskId'] } },
  '/api/hosts': { get: { summary: 'Hosts: state, capacity, reservations and tasks' } },
  '/api/hosts/{id}': { get: { summary: 'A host', params: ['id'] } },
  '/api/hosts/{id}/decommission': {
    post: { summary: 'Take no new tasks; DECOMMISSIONED once empty', params: ['id'], body: 'HostChangeBody' },
  },
  '/api/hosts/{id}/freeze': { post: { summary: 'Take no new tasks (running ones stay)', params: ['id'], body: 'HostChangeBody' } },
  '/api/hosts/{id}/activate': { post: { summary: 'Take new tasks again', params: ['id'], body: 'HostChangeBody' } },
  '/api/agents': { get: { summary: 'Hosts as Singularity agents (?state=)' } },
  '/api/agents/agent/{id}': { get: { summary: "A host's state history", params: ['id'] } },
  '/api/agents/agent/{id}/details': { get: { summary: 'A host as a Singularity agent', params: ['id'] } },
  '/api/agents/agent/{id}/decommission': { post: { summary: 'Decommission a host', params: ['id'], body: 'HostChangeBody' } },
  '/api/agents/agent/{id}/freeze': { post: { summary: 'Freeze a host', params: ['id'], body: 'HostChangeBody' } },
  '/api/agents/agent/{id}/activate': { post: { summary: 'Activate a host', params: ['id'], body: 'HostChangeBody' } },
  '/api/slaves': { get: { summary: 'Alias of /api/agents (also /api/slaves/slave/{id}/...)' } },
  '/api/state': { get: { summary: 'Counts' } },
  '/api/events': { get: { summary: 'Server-sent events' } },
  '/health': { get: { summary: 'Liveness' } },
  '/metrics': { get: { summary: 'Prometheus metrics' } },
};

let cached: object | undefined;

export function openApiDocument(): object {
  if (cached) return cached;
  const components = toJsonSchema({ target: 'openapi-3.0' });
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [path, methods] of Object.entries(OPS)) {
    paths[path] = {};
    for (const [method, op] of Object.entries(methods)) {
      paths[path][method] = {
        summary: op.summary,
        ...(op.params ? { parameters: op.params.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })) } : {}),
        ...(op.body && components[op.body]
          ? { requestBody: { required: true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${op.body}` } } } } }
          : {}),
        responses: {
          '200': { description: 'OK' },
          '400': { description: 'Invalid input; the message names the field and rule' },
          '404': { description: 'Unknown id' },
          '409': { description: 'State conflict' },
        },
      };
    }
  }
  cached = { openapi: '3.0.3', info: { title: 'Fledge', version: '0.1.0' }, paths, components: { schemas: components } };
  return cached;
}
