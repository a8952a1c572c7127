// The OpenAPI document, generated from the same zod schemas that validate input, with the
// role each operation needs from the route table (access.ts).
import { ROUTE_ACCESS } from './access.ts';
import { toJsonSchema } from './schemas/index.ts';

type Op = { summary: string; body?: string; params?: string[] };

const OPS: Record<string, Partial<Record<'get' | 'post' | 'put' | 'delete', Op>>> = {
  '/api/requests': { get: { summary: 'List requests' }, post: { summary: 'Create or update a request', body: 'RequestInput' } },
  '/api/requests/request/{id}': {
    get: { summary: 'Get a request', params: ['id'] },
    delete: { summary: 'Delete a request', params: ['id'], body: 'DeleteRequestBody' },
  },
  '/api/requests/request/{id}/scale': {
    put: { summary: 'Scale a request, for a while with durationMillis', params: ['id'], body: 'ScaleBody' },
    delete: { summary: 'Keep the scale and drop its expiry', params: ['id'] },
  },
  '/api/requests/request/{id}/pause': {
    post: { summary: 'Pause a request, for a while with durationMillis', params: ['id'], body: 'PauseBody' },
    delete: { summary: 'Stay paused and drop the expiry', params: ['id'] },
  },
  '/api/requests/request/{id}/unpause': { post: { summary: 'Unpause a request', params: ['id'], body: 'UnpauseBody' } },
  '/api/requests/request/{id}/bounce': {
    post: { summary: 'Replace every task, new before old; given up after durationMillis', params: ['id'], body: 'BounceBody' },
    delete: { summary: 'Keep bouncing without the expiry', params: ['id'] },
  },
  '/api/requests/request/{id}/run': {
    post: {
      summary: 'Run now (ON_DEMAND, SCHEDULED): queue a run with runId, commandLineArgs, envOverrides, resources',
      params: ['id'],
      body: 'RunBody',
    },
  },
  '/api/requests/request/{id}/run/{runId}': {
    get: { summary: 'The task id of a run (404 while it waits in the queue)', params: ['id', 'runId'] },
  },
  '/api/requests/queued/pending': { get: { summary: 'Runs waiting in queues (SingularityPendingRequest)' } },
  '/api/track/run/{requestId}/{runId}': {
    get: { summary: "A run's state: its task's history, or its place in the queue", params: ['requestId', 'runId'] },
  },
  '/api/track/task/{taskId}': { get: { summary: "A task's state and history", params: ['taskId'] } },
  '/api/requests/request/{id}/traffic': {
    get: {
      summary:
        'Live traffic split and per-deploy request rate, error rate and latency from the load balancer (?windowSeconds=&stepSeconds=)',
      params: ['id'],
    },
  },
  '/api/requests/ids': { get: { summary: 'Request ids (not deleted)' } },
  '/api/requests/active': { get: { summary: 'Active requests' } },
  '/api/requests/paused': { get: { summary: 'Paused requests' } },
  '/api/requests/cooldown': { get: { summary: 'Active requests with an instance in crash-loop backoff' } },
  '/api/requests/finished': { get: { summary: 'Finished requests (SCHEDULED requests whose schedule has no future time)' } },
  '/api/requests/request/{id}/simple': { get: { summary: 'A request (as GET /api/requests/request/{id})', params: ['id'] } },
  '/api/requests/request/{id}/skip-healthchecks': {
    put: { summary: "Set the request's skipHealthchecks, for a while with durationMillis", params: ['id'], body: 'SkipHealthchecksBody' },
    delete: { summary: 'Keep skipHealthchecks as it is and drop its expiry', params: ['id'] },
  },
  '/api/requests/request/{id}/exit-cooldown': {
    post: { summary: 'Clear the crash-loop backoff of every instance', params: ['id'], body: 'ExitCooldownBody' },
  },
  '/api/deploys': { post: { summary: 'Start a deploy', body: 'DeployBody' } },
  '/api/deploys/plan': { post: { summary: 'Dry run of a deploy: steps, LB membership, waits, ETA; stores nothing', body: 'DeployBody' } },
  '/api/requests/request/{id}/rollback': {
    post: {
      summary: "Atomic deploy of the previous successful deploy's spec, or of the successful deploy named by deployId",
      params: ['id'],
      body: 'RollbackBody',
    },
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
  '/api/history/request/{id}/tasks': { get: { summary: "A request's finished tasks", params: ['id'] } },
  '/api/history/request/{id}/tasks/active': { get: { summary: "A request's live tasks (SingularityTaskIdHistory)", params: ['id'] } },
  '/api/history/request/{id}/deploy/{deployId}/tasks/active': {
    get: { summary: "A deploy's live tasks (SingularityTaskIdHistory)", params: ['id', 'deployId'] },
  },
  '/api/history/request/{id}/deploy/{deployId}/tasks/inactive': {
    get: { summary: "A deploy's finished tasks (SingularityTaskIdHistory)", params: ['id', 'deployId'] },
  },
  '/api/history/request/{id}/requests': { get: { summary: "The request's history, from the audit log", params: ['id'] } },
  '/api/tasks/active': { get: { summary: 'Live tasks' } },
  '/api/tasks/active/ids': { get: { summary: 'Live task ids' } },
  '/api/tasks/counts/request/{requestId}': { get: { summary: "A request's live task counts", params: ['requestId'] } },
  '/api/tasks/task/{taskId}/cleanup': { get: { summary: "A task's cleanup (404 when it is not being stopped)", params: ['taskId'] } },
  '/api/tasks/request/{requestId}': { get: { summary: "A request's live tasks", params: ['requestId'] } },
  '/api/tasks/ids/request/{requestId}': { get: { summary: "A request's task ids by state", params: ['requestId'] } },
  '/api/tasks/task/{taskId}': {
    get: { summary: 'A task', params: ['taskId'] },
    delete: { summary: 'Kill a task', params: ['taskId'], body: 'KillTaskBody' },
  },
  '/api/sandbox/{taskId}/read': { get: { summary: 'Read stdout or stderr', params: ['taskId'] } },
  '/api/sandbox/{taskId}/browse': { get: { summary: "List a folder of the task's sandbox (?path=)", params: ['taskId'] } },
  '/api/sandbox/{taskId}/download': { get: { summary: "Download a file of the task's sandbox (?path=)", params: ['taskId'] } },
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
  '/api/slaves/slave/{id}': { get: { summary: 'Alias of /api/agents/agent/{id}', params: ['id'] } },
  '/api/slaves/slave/{id}/details': { get: { summary: 'Alias of /api/agents/agent/{id}/details', params: ['id'] } },
  '/api/slaves/slave/{id}/decommission': { post: { summary: 'Alias of the agent decommission', params: ['id'], body: 'HostChangeBody' } },
  '/api/slaves/slave/{id}/freeze': { post: { summary: 'Alias of the agent freeze', params: ['id'], body: 'HostChangeBody' } },
  '/api/slaves/slave/{id}/activate': { post: { summary: 'Alias of the agent activate', params: ['id'], body: 'HostChangeBody' } },
  '/api/state': { get: { summary: 'Counts' } },
  '/api/events': { get: { summary: 'Server-sent events' } },
  '/api/openapi.json': { get: { summary: 'This document' } },
  '/api/webhooks': {
    get: { summary: 'Webhooks (secrets are never shown)' },
    post: { summary: 'Add a webhook (CREATED) or replace the one of the same type and uri (EXISTED)', body: 'WebhookBody' },
    delete: { summary: 'Delete a webhook and its queued deliveries (?webhookId=)' },
  },
  '/api/webhooks/{webhookId}': { delete: { summary: 'Delete a webhook and its queued deliveries', params: ['webhookId'] } },
  '/api/webhooks/summary': { get: { summary: 'Each webhook with the size of its delivery queue' } },
  '/api/webhooks/request': { get: { summary: "A REQUEST webhook's queued deliveries (?webhookId=)" } },
  '/api/webhooks/deploy': { get: { summary: "A DEPLOY webhook's queued deliveries (?webhookId=)" } },
  '/api/webhooks/task': { get: { summary: "A TASK webhook's queued deliveries (?webhookId=)" } },
  '/api/webhooks/request/{webhookId}': { get: { summary: "A REQUEST webhook's queued deliveries", params: ['webhookId'] } },
  '/api/webhooks/deploy/{webhookId}': { get: { summary: "A DEPLOY webhook's queued deliveries", params: ['webhookId'] } },
  '/api/webhooks/task/{webhookId}': { get: { summary: "A TASK webhook's queued deliveries", params: ['webhookId'] } },
  '/api/auth/whoami': { get: { summary: 'The name and role of the token sent' } },
  '/api/tokens': {
    get: { summary: 'List tokens (never the tokens themselves)' },
    post: { summary: 'Make a token: the answer holds it, once', body: 'CreateTokenBody' },
  },
  '/api/tokens/{name}': { delete: { summary: 'Revoke a token', params: ['name'] } },
  '/api/audit': { get: { summary: 'Mutating calls, newest first (filters: requestId, deployId, tokenName, since, until, limit)' } },
  '/health': { get: { summary: 'Liveness (no token needed; answers nothing else)' } },
  '/metrics': { get: { summary: 'Prometheus metrics' } },
};

/** `/api/tasks/task/{taskId}` + get → `GET /api/tasks/task/:taskId`, the key of ROUTE_ACCESS. */
export function routeKey(path: string, method: string): string {
  return `${method.toUpperCase()} ${path.replace(/\{([A-Za-z]+)\}/g, ':$1')}`;
}

let cached: object | undefined;

export function openApiDocument(): object {
  if (cached) return cached;
  const components = toJsonSchema({ target: 'openapi-3.0' });
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [path, methods] of Object.entries(OPS)) {
    paths[path] = {};
    for (const [method, op] of Object.entries(methods)) {
      const access = ROUTE_ACCESS[routeKey(path, method)];
      const role = access?.role ?? 'read';
      paths[path][method] = {
        summary: op.summary,
        'x-fledge-role': role,
        security: role === 'public' ? [] : [{ bearer: [] }],
        ...(op.params ? { parameters: op.params.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })) } : {}),
        ...(op.body && components[op.body]
          ? { requestBody: { required: true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${op.body}` } } } } }
          : {}),
        responses: {
          '200': { description: 'OK' },
          '400': { description: 'Invalid input; the message names the field and rule' },
          '404': { description: 'Unknown id' },
          '409': { description: 'State conflict' },
          ...(role === 'public' ? {} : { '401': { description: 'No valid token' }, '403': { description: `Needs role ${role}` } }),
          '413': { description: 'Body larger than --max-body-bytes' },
          '415': { description: 'A body that is not application/json' },
          '421': { description: 'A Host that is not a name of this server' },
        },
      };
    }
  }
  cached = {
    openapi: '3.0.3',
    info: { title: 'Fledge', version: '0.1.0' },
    paths,
    components: { schemas: components, securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'fl_… tokens' } } },
  };
  return cached;
}
