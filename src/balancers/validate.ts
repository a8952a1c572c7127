import { normalizeBasePath } from './base-path.ts';
import { invalidRouting } from './routing.ts';
import { MAX_UPSTREAM_WEIGHT, type LbService, type Upstream } from './types.ts';

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
    if (u.weight !== undefined && (!Number.isInteger(u.weight) || u.weight < 0 || u.weight > MAX_UPSTREAM_WEIGHT)) {
      return `upstream ${u.taskId} has invalid weight ${u.weight} (an integer 0..${MAX_UPSTREAM_WEIGHT})`;
    }
  }
  return invalidRouting(service.routing);
}
