// What one step of a request decides: shared by the service step (request/step.ts) and the
// run-to-completion step (jobs/step.ts), which answers the same shape.
import type { PendingOutcome } from '../deploy/step.ts';
import type { Action, Decision } from '../deploy/types.ts';
import type { RequestRecord, TaskRecord } from '../model.ts';

/** Something a run-to-completion step wants logged (a skipped due time, a retry, an overrun). */
export interface JobNote {
  level: 'info' | 'warn';
  msg: string;
  taskId?: string;
  runId?: string;
  dueAt?: number;
}

export interface StepOutcome {
  now: number;
  /** the request record, when it changed */
  request?: RequestRecord;
  /** task records created or changed, one per task */
  tasks: readonly TaskRecord[];
  /** task records to delete: tasks that waited for a host and got one (under a new id) */
  deletedTasks: readonly string[];
  /** what became of the pending deploy */
  pending: PendingOutcome;
  /** in order: the deploy's, then the steady state's */
  actions: readonly Action[];
  /** look at the request again by then (at the latest) */
  wakeAt?: number;
  /** the entries the deploy step added to its decision log */
  decisions: readonly Decision[];
  /** why the pending deploy is not done yet, when it waits */
  waiting?: { why: string; until?: number };
  /** run-to-completion requests: what to log (skipped due times, retries, overdue runs) */
  notes?: readonly JobNote[];
}
