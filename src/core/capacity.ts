// Where a request's capacity stands: how many tasks of the active deploy serve (healthy, and in
// the load balancer when it is load balanced) against how many are wanted, and whether tasks
// of other deploys are still around. Shared by the metrics (time back to full capacity after a
// failed deploy), the CLI watch (it ends when capacity has settled) and the UI.
import type { HealthState, LbOpState, TaskState } from './model.ts';

/** The fields of a task record (or its API view) this needs. */
export interface CapacityTask {
  taskId: { deployId: string };
  state: TaskState;
  health: { state: HealthState };
  lb: { add?: { state: LbOpState }; remove?: unknown };
  cleanup?: unknown;
}

export interface Capacity {
  deployId: string | undefined;
  wanted: number;
  /** the active deploy's live tasks not on their way out */
  running: number;
  healthy: number;
  /** healthy and in the load balancer */
  inLb: number;
  loadBalanced: boolean;
  /** serving at full capacity: `wanted` healthy tasks (in the LB when load balanced) */
  full: boolean;
  /** live tasks of other deploys (a deploy's leftovers being cleaned up) */
  others: number;
  /** full, and nothing else left running */
  settled: boolean;
}

const LIVE: ReadonlySet<string> = new Set(['TASK_LAUNCHED', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_CLEANING', 'TASK_KILLING']);

export function capacityOf(
  request: { instances: number; loadBalanced: boolean },
  activeDeployId: string | undefined,
  tasks: readonly CapacityTask[],
): Capacity {
  let running = 0;
  let healthy = 0;
  let inLb = 0;
  let others = 0;
  for (const t of tasks) {
    if (!LIVE.has(t.state)) continue;
    if (t.taskId.deployId !== activeDeployId) {
      others += 1;
      continue;
    }
    if (t.cleanup) continue;
    running += 1;
    if (t.state !== 'TASK_RUNNING' || t.health.state !== 'HEALTHY') continue;
    healthy += 1;
    if (t.lb.add?.state === 'SUCCESS' && !t.lb.remove) inLb += 1;
  }
  const wanted = activeDeployId === undefined ? 0 : request.instances;
  const serving = request.loadBalanced ? inLb : healthy;
  const full = serving >= wanted;
  return {
    deployId: activeDeployId,
    wanted,
    running,
    healthy,
    inLb,
    loadBalanced: request.loadBalanced,
    full,
    others,
    settled: full && others === 0,
  };
}
