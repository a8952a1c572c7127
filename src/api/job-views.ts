// Singularity-shaped views of runs: pending requests (SingularityPendingRequest), task states
// by run id (SingularityTaskState), and the run fields of a request parent.
import type { PendingRunView, RunState } from './types.ts';
import { isLive, isRunToCompletion, type QueuedRun, type RequestRecord, type TaskRecord } from '../core/model.ts';
import type { Webhook } from '../core/webhooks.ts';

export function pendingRequestView(record: RequestRecord, q: QueuedRun): PendingRunView {
  return {
    requestId: record.request.id,
    deployId: record.activeDeployId,
    timestamp: q.queuedAt,
    pendingType: q.trigger,
    runId: q.runId,
    ...(q.commandLineArgs ? { cmdLineArgsList: q.commandLineArgs } : {}),
    ...(q.message ? { message: q.message } : {}),
    ...(q.resources ? { resources: q.resources } : {}),
    envOverrides: q.envOverrides ?? {},
    ...(q.runAt !== undefined ? { runAt: q.runAt } : {}),
    ...(q.user !== undefined ? { user: q.user } : {}),
  };
}

/** SingularityPendingTaskId of a queued run (it has no task yet). */
function pendingTaskId(record: RequestRecord, q: QueuedRun, position: number) {
  const deployId = record.activeDeployId ?? '';
  const nextRunAt = q.runAt ?? q.queuedAt;
  return {
    requestId: record.request.id,
    deployId,
    nextRunAt,
    instanceNo: position + 1,
    pendingType: q.trigger,
    createdAt: q.queuedAt,
    id: `${record.request.id}-${deployId}-${nextRunAt}-${position + 1}-${q.trigger}-${q.queuedAt}`,
  };
}

/** SingularityTaskState of a run: its task, or its place in the queue. */
export function taskStateView(record: RequestRecord, runId: string, task: TaskRecord | undefined): RunState | undefined {
  if (task) {
    return {
      taskId: task.taskId,
      runId,
      currentState: task.state,
      taskHistory: task.updates.map((u) => ({
        taskId: task.taskId,
        timestamp: u.timestamp,
        taskState: u.state,
        statusMessage: u.message,
        previous: [],
      })),
      pending: false,
      // Fledge: what the run ended with
      ...(task.exitCode !== undefined ? { exitCode: task.exitCode } : {}),
      ...(!isLive(task.state) && task.runningAt !== undefined && task.doneAt !== undefined
        ? { durationMillis: task.doneAt - task.runningAt }
        : {}),
    };
  }
  const queue = record.jobs?.queue ?? [];
  const at = queue.findIndex((q) => q.runId === runId);
  const q = queue[at];
  if (!q) return undefined;
  return { pendingTaskId: pendingTaskId(record, q, at), runId, taskHistory: [], pending: true, queuePosition: at + 1 };
}

/** The request parent's run fields (Fledge): next due time, the queue, skipped due times. */
export function jobParentFields(record: RequestRecord) {
  if (!isRunToCompletion(record.request.requestType)) return {};
  const jobs = record.jobs ?? {};
  return {
    ...(jobs.nextRunAt !== undefined ? { nextRunAt: jobs.nextRunAt } : {}),
    pendingRequests: (jobs.queue ?? []).map((q) => pendingRequestView(record, q)),
    ...(jobs.skipped ? { skippedRuns: jobs.skipped } : {}),
  };
}

/** A webhook as reads show it: the secret is write-only. */
export function webhookView(w: Webhook) {
  return {
    id: w.id,
    uri: w.uri,
    type: w.type,
    timestamp: w.timestamp,
    ...(w.user ? { user: w.user } : {}),
    ...(w.events ? { events: w.events } : {}),
    secretSet: w.secret !== undefined,
  };
}
