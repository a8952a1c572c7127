import { normalizeBasePath } from './base-path.ts';
import { invalidRouting } from './routing.ts';
import type { LbService, Upstream } from './types.ts';

/**
 * Why an operation cannot be applied, or undefined. Checked before anything changes, so a
 * rejected operation is FAILED and changed nothing.
 */
export function invalidOperation(
  service: LbService,
  add: Upstream[],
  remove: Upstream[],
  basePathOwner: (basePath: string) => string | undefined,
): string | undefined {
  if (!service.serviceId) return 'service has no id';
  const owner = basePathOwner(normalizeBasePath(service.basePath));
  if (owner !== undefined && owner !== service.serviceId) {
    return `basePath ${normalizeBasePath(service.basePath)} is already routed to service ${owner}`;
  }
  const removing = new Set(remove.map((u) => u.taskId));
  for (const u of add) {
    if (removing.has(u.taskId)) return `upstream ${u.taskId} is both added and removed`;
    if (!u.host) return `upstream ${u.taskId} has no host`;
    if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65_535) return `upstream ${u.taskId} has invalid port ${u.port}`;
  }
  return invalidRouting(service.routing);
}
