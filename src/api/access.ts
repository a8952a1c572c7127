// Who may call which route: one row per route of the app (a test keeps this table and the
// app's routes equal, so a new route cannot be forgotten). Roles: read < deploy < admin.
import type { Role } from '../auth/roles.ts';

export interface Access {
  /** the weakest role allowed; `public` needs no token */
  role: Role | 'public';
  /** recorded in the audit log (every call that can change something) */
  audit: boolean;
}

const open: Access = { role: 'public', audit: false };
const read: Access = { role: 'read', audit: false };
const deploy: Access = { role: 'deploy', audit: true };
const admin: Access = { role: 'admin', audit: false };
const adminWrite: Access = { role: 'admin', audit: true };

/** `METHOD /path/:param` → access, for every route createApp registers. */
export const ROUTE_ACCESS: Readonly<Record<string, Access>> = {
  // Load balancers and probes; answers nothing but {status: ok}.
  'GET /health': open,
  // The web UI's files (and its client-side routes): it asks for a token itself.
  'GET /*': open,

  'POST /api/requests': deploy,
  'GET /api/requests': read,
  'GET /api/requests/request/:id': read,
  'DELETE /api/requests/request/:id': deploy,
  'PUT /api/requests/request/:id/scale': deploy,
  'POST /api/requests/request/:id/pause': deploy,
  'POST /api/requests/request/:id/unpause': deploy,
  'POST /api/requests/request/:id/bounce': deploy,
  'POST /api/requests/request/:id/run': deploy,
  'GET /api/requests/request/:id/run/:runId': read,
  'GET /api/requests/queued/pending': read,
  'GET /api/track/run/:requestId/:runId': read,
  'GET /api/track/task/:taskId': read,
  'POST /api/requests/request/:id/rollback': deploy,
  'GET /api/requests/request/:id/traffic': read,
  'GET /api/requests/ids': read,
  'GET /api/requests/active': read,
  'GET /api/requests/paused': read,
  'GET /api/requests/cooldown': read,
  'GET /api/requests/finished': read,
  'GET /api/requests/request/:id/simple': read,
  'PUT /api/requests/request/:id/skip-healthchecks': deploy,
  'POST /api/requests/request/:id/exit-cooldown': deploy,
  // Singularity's expiring actions: the change stays, its expiry is dropped.
  'DELETE /api/requests/request/:id/scale': deploy,
  'DELETE /api/requests/request/:id/pause': deploy,
  'DELETE /api/requests/request/:id/bounce': deploy,
  'DELETE /api/requests/request/:id/skip-healthchecks': deploy,

  'POST /api/deploys': deploy,
  // A dry run: it stores nothing, so it is not audited (the UI calls it as you type).
  'POST /api/deploys/plan': { role: 'deploy', audit: false },
  'GET /api/deploys/pending': read,
  'DELETE /api/deploys/deploy/:deployId/request/:requestId': deploy,
  'POST /api/deploys/update': deploy,
  'POST /api/deploys/advance': deploy,
  'POST /api/deploys/reject': deploy,

  'GET /api/history/request/:id/deploys': read,
  'GET /api/history/request/:id/deploy/:deployId': read,
  'GET /api/history/task/:taskId': read,
  'GET /api/history/request/:id/tasks': read,
  'GET /api/history/request/:id/tasks/active': read,
  'GET /api/history/request/:id/deploy/:deployId/tasks/active': read,
  'GET /api/history/request/:id/deploy/:deployId/tasks/inactive': read,
  'GET /api/history/request/:id/requests': read,

  'GET /api/tasks/active': read,
  'GET /api/tasks/request/:requestId': read,
  'GET /api/tasks/ids/request/:requestId': read,
  'GET /api/tasks/task/:taskId': read,
  'DELETE /api/tasks/task/:taskId': deploy,
  'GET /api/sandbox/:taskId/read': read,
  'GET /api/sandbox/:taskId/browse': read,
  // A sandbox's files can hold what the task was given (artifacts, config), which read tokens
  // never see in the deploy's env either: downloads need the deploy role. Not a change: not audited.
  'GET /api/sandbox/:taskId/download': { role: 'deploy', audit: false },
  'GET /api/tasks/active/ids': read,
  'GET /api/tasks/counts/request/:requestId': read,
  'GET /api/tasks/task/:taskId/cleanup': read,

  'GET /api/state': read,
  'GET /api/openapi.json': read,
  // Prometheus scrapes with a read token (bearer_token_file in its scrape config).
  'GET /metrics': read,
  'GET /api/events': read,

  // Hosts (and Singularity's agents/slaves): changing one moves or stops tasks of every request.
  'GET /api/hosts': read,
  'GET /api/hosts/:id': read,
  'POST /api/hosts/:id/decommission': adminWrite,
  'POST /api/hosts/:id/activate': adminWrite,
  'POST /api/hosts/:id/freeze': adminWrite,
  'GET /api/agents': read,
  'GET /api/agents/agent/:id': read,
  'GET /api/agents/agent/:id/details': read,
  'POST /api/agents/agent/:id/decommission': adminWrite,
  'POST /api/agents/agent/:id/activate': adminWrite,
  'POST /api/agents/agent/:id/freeze': adminWrite,
  'GET /api/slaves': read,
  'GET /api/slaves/slave/:id': read,
  'GET /api/slaves/slave/:id/details': read,
  'POST /api/slaves/slave/:id/decommission': adminWrite,
  'POST /api/slaves/slave/:id/activate': adminWrite,
  'POST /api/slaves/slave/:id/freeze': adminWrite,

  // Webhooks send every event to a URL and hold a secret: admin only, reads included.
  'GET /api/webhooks': admin,
  'POST /api/webhooks': adminWrite,
  'DELETE /api/webhooks': adminWrite,
  'DELETE /api/webhooks/:webhookId': adminWrite,
  'GET /api/webhooks/summary': admin,
  'GET /api/webhooks/request': admin,
  'GET /api/webhooks/deploy': admin,
  'GET /api/webhooks/task': admin,
  'GET /api/webhooks/request/:webhookId': admin,
  'GET /api/webhooks/deploy/:webhookId': admin,
  'GET /api/webhooks/task/:webhookId': admin,

  'GET /api/auth/whoami': read,
  'GET /api/tokens': admin,
  'POST /api/tokens': adminWrite,
  'DELETE /api/tokens/:name': adminWrite,
  'GET /api/audit': admin,
};

/** A path no route serves (a 404) still needs a token, and a write to it is audited. */
export function accessOf(routeKey: string | undefined, method: string): Access {
  const known = routeKey !== undefined ? ROUTE_ACCESS[routeKey] : undefined;
  if (known) return known;
  return { role: 'read', audit: isMutating(method) };
}

export function isMutating(method: string): boolean {
  return method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS';
}
