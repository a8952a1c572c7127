// Webhook events, pure: what a change means to a webhook receiver, in Singularity's payload
// shapes (SingularityRequestHistory, SingularityDeployUpdate, SingularityTaskHistoryUpdate),
// plus Fledge's PROGRESS deploy update per phase or step change. The store queues one
// delivery per matching webhook in the same transaction as the change (so a crash loses none);
// src/webhooks/ sends them. Delivery timing is here too, so its rule is table-tested.
import type { DeployProgress, DeployResult, PendingDeploy } from './deploy/types.ts';
import type { Deploy, FledgeRequest, RequestRecord, TaskRecord } from './model.ts';
import type { StepOutcome } from './request/step.ts';

export type WebhookType = 'REQUEST' | 'DEPLOY' | 'TASK';

export interface WebhookEvent {
  type: WebhookType;
  /** the payload's eventType (REQUEST, DEPLOY) or taskState (TASK): what filters match */
  eventType: string;
  requestId: string;
  at: number;
  payload: Record<string, unknown>;
}

/** A registered webhook. `secret` is write-only: never in a view, never logged. */
export interface Webhook {
  id: string;
  uri: string;
  type: WebhookType;
  timestamp: number;
  user?: string;
  secret?: string;
  /** only these eventTypes (default: all) */
  events?: string[];
}

export type RequestHistoryType =
  'CREATED' | 'UPDATED' | 'DELETING' | 'DELETED' | 'PAUSED' | 'UNPAUSED' | 'FINISHED' | 'DEPLOYED_TO_UNPAUSE' | 'BOUNCED' | 'SCALED';

/** Singularity's id: the type and the URI. */
export function webhookId(type: WebhookType, uri: string): string {
  return `${type}-${encodeURIComponent(uri)}`;
}

export function requestEvent(eventType: RequestHistoryType, request: FledgeRequest, at: number, message?: string): WebhookEvent {
  return {
    type: 'REQUEST',
    eventType,
    requestId: request.id,
    at,
    payload: { createdAt: at, eventType, request, ...(message ? { message } : {}) },
  };
}

/** The REQUEST event a change of request state stands for, if any. */
export function requestStateEvent(before: RequestRecord | undefined, after: RequestRecord, at: number): WebhookEvent | undefined {
  if (!before || before.state === after.state) return undefined;
  const type: RequestHistoryType | undefined =
    after.state === 'DELETED'
      ? 'DELETED'
      : after.state === 'FINISHED'
        ? 'FINISHED'
        : after.state === 'ACTIVE' && before.state === 'DEPLOYING_TO_UNPAUSE'
          ? 'DEPLOYED_TO_UNPAUSE'
          : after.state === 'PAUSED' && before.state === 'DEPLOYING_TO_UNPAUSE'
            ? 'PAUSED'
            : undefined;
  return type ? requestEvent(type, after.request, at) : undefined;
}

/** Deploy progress without the decision log (which can be long; it is in the deploy history). */
function slimProgress(
  progress: DeployProgress,
): Omit<DeployProgress, 'decisionLog'> & { lastDecision?: DeployProgress['decisionLog'][number] } {
  const { decisionLog, ...rest } = progress;
  const last = decisionLog[decisionLog.length - 1];
  return { ...rest, ...(last ? { lastDecision: last } : {}) };
}

export function deployEvent(
  eventType: 'STARTING' | 'FINISHED' | 'PROGRESS',
  deploy: Deploy | undefined,
  marker: { requestId: string; deployId: string; timestamp: number; message?: string },
  at: number,
  more: { result?: DeployResult; progress?: DeployProgress } = {},
): WebhookEvent {
  return {
    type: 'DEPLOY',
    eventType,
    requestId: marker.requestId,
    at,
    payload: {
      deployMarker: marker,
      ...(deploy ? { deploy } : {}),
      eventType,
      ...(more.result ? { deployResult: more.result } : {}),
      ...(more.progress ? { deployProgress: slimProgress(more.progress) } : {}),
    },
  };
}

/** PROGRESS when the pending deploy moved to another phase or step. */
export function deployProgressEvent(before: PendingDeploy | undefined, after: PendingDeploy, at: number): WebhookEvent | undefined {
  const a = after.progress;
  if (before && before.progress.phase === a.phase && before.progress.step === a.step) return undefined;
  const marker = {
    requestId: after.requestId,
    deployId: after.deployId,
    timestamp: after.startedAt,
    ...(after.message ? { message: after.message } : {}),
  };
  return deployEvent('PROGRESS', undefined, marker, at, { progress: a });
}

/** One TASK event per state update the task gained (SingularityTaskHistoryUpdate). */
export function taskEvents(before: TaskRecord | undefined, after: TaskRecord): WebhookEvent[] {
  const seen = before?.updates.length ?? 0;
  return after.updates.slice(seen).map((u) => ({
    type: 'TASK' as const,
    eventType: u.state,
    requestId: after.taskId.requestId,
    at: u.timestamp,
    payload: {
      taskId: after.taskId,
      timestamp: u.timestamp,
      taskState: u.state,
      ...(u.message ? { statusMessage: u.message } : {}),
      previous: [],
      // Fledge: what a run ended with
      ...(u.state === after.state && after.exitCode !== undefined ? { exitCode: after.exitCode } : {}),
      ...(after.run?.runId !== undefined ? { runId: after.run.runId } : {}),
    },
  }));
}

/** Whether `webhook` wants `event`. */
export function wants(webhook: Pick<Webhook, 'type' | 'events'>, event: Pick<WebhookEvent, 'type' | 'eventType'>): boolean {
  return webhook.type === event.type && (!webhook.events || webhook.events.includes(event.eventType));
}

/**
 * When a delivery that failed `attempts` times is tried again: exponential from `baseMillis`,
 * at most `maxMillis` apart; undefined once the event is older than `maxAgeMillis` (dropped).
 */
export function nextAttemptAt(
  createdAt: number,
  attempts: number,
  now: number,
  o: { baseMillis: number; maxMillis: number; maxAgeMillis: number },
): number | undefined {
  const delay = Math.min(o.baseMillis * 2 ** Math.max(0, attempts - 1), o.maxMillis);
  const at = now + delay;
  return at - createdAt > o.maxAgeMillis ? undefined : at;
}

/** The events one request step stands for, from what it saw and what it changed. */
export function stepWebhookEvents(
  obs: { tasks: readonly TaskRecord[]; pending?: PendingDeploy; pendingDeploy?: Deploy },
  record: RequestRecord,
  outcome: Pick<StepOutcome, 'request' | 'tasks' | 'pending' | 'now'>,
): WebhookEvent[] {
  const out: WebhookEvent[] = [];
  const before = new Map(obs.tasks.map((t) => [t.taskId.id, t]));
  for (const t of outcome.tasks) out.push(...taskEvents(before.get(t.taskId.id), t));
  const { pending, now } = outcome;
  if (pending.kind === 'UPDATED') {
    const e = deployProgressEvent(obs.pending, pending.pending, now);
    if (e) out.push(e);
  }
  if (pending.kind === 'ENDED' && obs.pending) {
    const p = obs.pending;
    const marker = { requestId: p.requestId, deployId: p.deployId, timestamp: p.startedAt, ...(p.message ? { message: p.message } : {}) };
    out.push(deployEvent('FINISHED', obs.pendingDeploy, marker, now, { result: pending.result }));
  }
  if (outcome.request) {
    const e = requestStateEvent(record, outcome.request, now);
    if (e) out.push(e);
  }
  return out;
}
