// A decision under construction: the state changes and actions one pure step produces.
// Pure code fills it; the loop persists `tasks`/`request`/`pending`, then runs `actions`.
import type { Action, DeployProgress, DeployResult, PendingDeploy } from './deploy/types.ts';
import type { Deploy, RequestRecord, TaskRecord } from './model.ts';

export class Plan {
  /** new or changed tasks, by id */
  readonly tasks = new Map<string, TaskRecord>();
  readonly actions: Action[] = [];
  request?: RequestRecord;
  /** the pending deploy after this step; null = the deploy ended */
  pending?: PendingDeploy | null;
  /** set when the pending deploy ended in this step */
  result?: { deployId: string; result: DeployResult; progress: DeployProgress };
  wakeAt?: number;

  constructor(readonly now: number) {}

  wake(at: number): void {
    if (this.wakeAt === undefined || at < this.wakeAt) this.wakeAt = at;
  }

  putTask(task: TaskRecord): void {
    this.tasks.set(task.taskId.id, task);
  }

  act(action: Action): void {
    this.actions.push(action);
  }

  get changed(): boolean {
    return this.tasks.size > 0 || this.actions.length > 0 || this.request !== undefined || this.pending !== undefined;
  }
}

export const HOST = 'localhost';
export const RACK = 'local';

/** A new task record for `deploy`'s instance `instanceNo`, not started yet. */
export function createTask(deploy: Deploy, instanceNo: number, now: number, taken: ReadonlySet<string>): TaskRecord {
  let startedAt = now;
  let id = taskIdString(deploy.requestId, deploy.id, startedAt, instanceNo);
  // Two tasks for one instance in the same millisecond (a crash-replace) must still differ.
  while (taken.has(id)) id = taskIdString(deploy.requestId, deploy.id, ++startedAt, instanceNo);
  return {
    taskId: {
      requestId: deploy.requestId,
      deployId: deploy.id,
      startedAt,
      instanceNo,
      host: HOST,
      sanitizedHost: HOST,
      rackId: RACK,
      sanitizedRackId: RACK,
      id,
    },
    state: 'TASK_LAUNCHED',
    ports: [],
    health: { state: 'UNKNOWN', results: [] },
    lb: {},
    updates: [{ state: 'TASK_LAUNCHED', timestamp: now }],
  };
}

function taskIdString(requestId: string, deployId: string, startedAt: number, instanceNo: number): string {
  return `${requestId}-${deployId}-${startedAt}-${instanceNo}-${HOST}-${RACK}`;
}

export function assertNever(value: never): never {
  throw new Error(`Unexpected value: ${JSON.stringify(value)}`);
}
