// The API's domain operations: check, record intent atomically, wake the loop. The API
// never drives the state machine itself.
import { isDeepStrictEqual } from 'node:util';
import type { Clock } from '../core/clock.ts';
import { diffFields, type FieldChange } from '../core/deploy/diff.ts';
import { previewDeploy, type DeployPreview } from '../core/deploy/preview.ts';
import { createPendingDeploy } from '../core/deploy/step.ts';
import { DEFAULT_MAX_LOAD_PER_TASK_RATIO, planTraffic } from '../core/deploy/traffic.ts';
import type { DeployIntent } from '../core/deploy/types.ts';
import { badRequest, conflict, notFound } from '../core/errors.ts';
import type { EventBus } from '../core/events.ts';
import {
  isLive,
  isRunToCompletion,
  type Deploy,
  type ExpiringKind,
  type FledgeRequest,
  type QueuedRun,
  type RequestRecord,
} from '../core/model.ts';
import { prometheusTarget, type PrometheusSettings } from '../checks/prometheus/target.ts';
import { deployEvent, requestEvent, taskEvents, type RequestHistoryType } from '../core/webhooks.ts';
import type { RequestLocks } from '../reconciler/locks.ts';
import type { Store } from '../store/types.ts';
import { validateDeployForRequest } from './schemas/index.ts';

/** POST /api/deploys/plan: the preview, and how the deploy differs from the active one. */
export type DeployPlan = DeployPreview & {
  activeDeployId?: string;
  diff: FieldChange[];
  /** with updatedRequest: how the request changes */
  requestDiff?: FieldChange[];
  warnings: string[];
};

export interface ServiceDeps {
  store: Store;
  locks: RequestLocks;
  clock: Clock;
  events: EventBus;
  wake: (requestId: string) => void;
  allowCanaryLbChange: boolean;
  /** where `prometheus` checks may send their queries (--prometheus-url, --prometheus-allow) */
  prometheus?: PrometheusSettings;
  /** names of the server-wide acceptance hooks, for plans (none when absent) */
  serverChecks?: () => string[];
  /** runs a request may have waiting in its queue (default 1000) */
  maxQueuedRuns?: number;
  /** a fresh run id (the API's; core has no randomness) */
  newRunId?: () => string;
}

export interface RunNowInput {
  runId?: string;
  commandLineArgs?: string[];
  message?: string;
  resources?: QueuedRun['resources'];
  envOverrides?: Record<string, string>;
  runAt?: number;
}

export interface DeployInput {
  deploy: Deploy;
  message?: string;
  unpauseOnSuccessfulDeploy?: boolean;
  updatedRequest?: FledgeRequest;
}

export interface PreparedDeploy {
  record: RequestRecord;
  /** the deploy as it will be stored (canary may be turned off) */
  deploy: Deploy;
  active?: Deploy;
  warnings: string[];
}

const RUNNABLE_CHECK_TYPES = new Set(['http', 'command', 'manual', 'lb', 'prometheus']);

export class FledgeService {
  constructor(private readonly d: ServiceDeps) {}

  async #live(requestId: string): Promise<RequestRecord> {
    const record = await this.d.store.getRequest(requestId);
    if (!record || record.state === 'DELETED') throw notFound(`Request ${requestId} not found`);
    return record;
  }

  async #write<T>(requestId: string, fn: () => Promise<T>): Promise<T> {
    const result = await this.d.locks.run(requestId, fn);
    this.d.wake(requestId);
    return result;
  }

  async saveRequest(request: FledgeRequest): Promise<RequestRecord> {
    assertSupportedType(request);
    return this.#write(request.id, async () => {
      const now = this.d.clock.now();
      const existing = await this.d.store.getRequest(request.id);
      let record: RequestRecord;
      if (existing && existing.state !== 'DELETED') {
        if (existing.state === 'DELETING') throw conflict(`Request ${request.id} is being deleted`);
        if (existing.request.requestType !== request.requestType) {
          throw badRequest(`requestType: cannot change from ${existing.request.requestType} to ${request.requestType}`, [
            { field: 'requestType', rule: 'immutable' },
          ]);
        }
        const pending = await this.d.store.getPending(request.id);
        if (pending?.updatedRequest) {
          throw conflict(`Request ${request.id} has a pending deploy ${pending.deployId} that carries an updatedRequest`);
        }
        record = { ...existing, request, timestamp: now };
      } else {
        // A re-created request keeps its LB operation counter so operation ids are never reused.
        record = { request, state: 'ACTIVE', timestamp: now, ...(existing?.lbSeq ? { lbSeq: existing.lbSeq } : {}) };
      }
      const created = !existing || existing.state === 'DELETED';
      await this.d.store.apply({ requests: [record], webhookEvents: [requestEvent(created ? 'CREATED' : 'UPDATED', request, now)] });
      this.d.events.publish({ type: 'REQUEST', at: now, request: record });
      return record;
    });
  }

  /**
   * Every check a new deploy must pass, without writing anything: the effective deploy (canary
   * turned off when the server allows an LB change that way), the request record, the active
   * deploy and warnings. createDeploy runs it under the request's lock, then writes;
   * POST /api/deploys/plan runs it alone, so a plan answers the same 4xx a deploy would.
   */
  async prepareDeploy(input: DeployInput): Promise<PreparedDeploy> {
    const { deploy } = input;
    const { store } = this.d;
    const warnings: string[] = [];
    // Accepted by the schema (it is in the spec) but not run by this server: refuse it now
    // rather than fail the deploy at its first acceptance.
    deploy.acceptanceChecks.forEach((check, i) => {
      if (!RUNNABLE_CHECK_TYPES.has(check.type)) {
        throw badRequest(
          `deploy.acceptanceChecks[${i}].type: ${check.type} checks are not supported by this server (http, command, manual, lb, prometheus are)`,
          [{ field: `deploy.acceptanceChecks[${i}].type`, rule: 'http, command, manual, lb or prometheus' }],
        );
      }
      if (check.type === 'prometheus') {
        const url = check.options.url as string | undefined;
        const target = prometheusTarget(this.d.prometheus ?? { allow: [] }, url);
        if ('refused' in target) {
          const field = `deploy.acceptanceChecks[${i}].url`;
          throw badRequest(`${field}: ${target.refused}`, [
            {
              field,
              rule: url === undefined ? 'required without --prometheus-url' : 'the --prometheus-url or a host in --prometheus-allow',
            },
          ]);
        }
      }
    });
    if (input.updatedRequest && input.updatedRequest.id !== deploy.requestId) {
      throw badRequest(`updatedRequest.id: ${input.updatedRequest.id} does not match deploy.requestId ${deploy.requestId}`, [
        { field: 'updatedRequest.id', rule: 'must equal deploy.requestId' },
      ]);
    }
    const record = await this.#live(deploy.requestId);
    if (record.state === 'DELETING') throw conflict(`Request ${deploy.requestId} is being deleted`);
    if (input.updatedRequest) {
      assertSupportedType(input.updatedRequest);
      if (input.updatedRequest.requestType !== record.request.requestType) {
        throw badRequest('updatedRequest.requestType: cannot change the request type', [
          { field: 'updatedRequest.requestType', rule: 'immutable' },
        ]);
      }
    }
    const pending = await store.getPending(deploy.requestId);
    if (pending) {
      throw conflict(`Request ${deploy.requestId} already has a pending deploy ${pending.deployId}`);
    }
    if (await store.getDeploy(deploy.requestId, deploy.id)) {
      throw badRequest(`deploy.id: ${deploy.id} was already used for request ${deploy.requestId}; deploy ids are never reused`, [
        { field: 'deploy.id', rule: 'unique per request' },
      ]);
    }
    const target = input.updatedRequest ?? record.request;
    // The body schema runs these only when it carries updatedRequest; the stored request
    // is only known here (a load-balanced request's deploy needs serviceBasePath...).
    const issues = validateDeployForRequest(deploy, target);
    if (issues.length > 0) {
      throw badRequest(`Invalid deploy: ${issues.map((i) => `${i.field}: ${i.rule}`).join('; ')}`, issues);
    }
    deploy.acceptanceChecks.forEach((check, i) => {
      if (check.type === 'lb' && !target.loadBalanced) {
        const field = `deploy.acceptanceChecks[${i}].type`;
        throw badRequest(`${field}: an lb check reads the load balancer's counters, and request ${target.id} is not loadBalanced`, [
          { field, rule: 'lb only on a loadBalanced request' },
        ]);
      }
    });
    let effective = deploy;
    const active = record.activeDeployId ? await store.getDeploy(record.request.id, record.activeDeployId) : undefined;
    assertTrafficPlan(deploy, target, active ? record.request.instances : 0);
    if (deploy.canaryDeploySettings.enableCanaryDeploy && target.loadBalanced && active) {
      const differs = lbDifferences(active, deploy);
      if (differs.length > 0) {
        const why = `a canary deploy cannot change load balancer settings (${differs.join(', ')}) of the active deploy ${active.id}: old and new tasks would be served under different routes`;
        if (!this.d.allowCanaryLbChange) {
          throw badRequest(`deploy.canaryDeploySettings.enableCanaryDeploy: ${why}`, [
            { field: 'deploy.canaryDeploySettings.enableCanaryDeploy', rule: 'same LB settings as the active deploy' },
          ]);
        }
        warnings.push(`Running without canary: ${why}`);
        effective = { ...deploy, canaryDeploySettings: { ...deploy.canaryDeploySettings, enableCanaryDeploy: false } };
      }
    }
    if (record.state === 'PAUSED' && !input.unpauseOnSuccessfulDeploy) {
      throw conflict(`Request ${deploy.requestId} is paused; unpause it or deploy with unpauseOnSuccessfulDeploy`);
    }
    return { record, deploy: effective, ...(active ? { active } : {}), warnings };
  }

  /** `user`: the name of the token that asked (Singularity's deployMarker.user). */
  async createDeploy(input: DeployInput, user?: string): Promise<{ record: RequestRecord; warnings: string[] }> {
    return this.#write(input.deploy.requestId, async () => {
      const again = await this.#sameDeployAgain(input);
      if (again) return again;
      return this.#commitDeploy(input, await this.prepareDeploy(input), user);
    });
  }

  /**
   * The pending deploy posted again exactly as it was created (a client retrying after its
   * connection, or the scheduler, died before the answer) is answered with what exists instead
   * of a 409: a retry changes nothing. Other content under its id is still the 409, and an ended
   * deploy's id a 400 (ids are never reused).
   */
  async #sameDeployAgain(input: DeployInput): Promise<{ record: RequestRecord; warnings: string[] } | undefined> {
    const { requestId, id } = input.deploy;
    const record = await this.#live(requestId);
    // Only the deploy in flight: any other used id posted again is a 400 (deploys.md, S12).
    if (record.pendingDeployId !== id) return undefined;
    const existing = await this.d.store.getDeploy(requestId, id);
    if (!existing) return undefined;
    const plain = (d: Deploy) => {
      const { timestamp: _t, ...rest } = JSON.parse(JSON.stringify(d)) as Deploy;
      return rest;
    };
    const asked = plain(input.deploy);
    // The server may have turned canary off on creation (an LB change it allows that way).
    const withoutCanary = { ...asked, canaryDeploySettings: { ...asked.canaryDeploySettings, enableCanaryDeploy: false } };
    const was = plain(existing);
    if (!isDeepStrictEqual(was, asked) && !isDeepStrictEqual(was, withoutCanary)) return undefined;
    return { record, warnings: [`Deploy ${id} was already created with this content: nothing changed`] };
  }

  /** The dry run of createDeploy: its checks, then the steps and their bounds; stores nothing. */
  async planDeploy(input: DeployInput): Promise<DeployPlan> {
    const { record, deploy, active, warnings } = await this.prepareDeploy(input);
    const plan = previewDeploy(deploy, record.request, active, {
      serverChecks: this.d.serverChecks?.() ?? [],
      ...(input.updatedRequest ? { updatedRequest: input.updatedRequest } : {}),
    });
    return {
      ...plan,
      ...(active ? { activeDeployId: active.id } : {}),
      // against the active deploy, Nomad-style (every field is new for a first deploy)
      diff: diffFields(active, deploy, new Set(['id', 'timestamp', 'requestId'])),
      ...(input.updatedRequest ? { requestDiff: diffFields(record.request, input.updatedRequest, new Set()) } : {}),
      warnings,
    };
  }

  /**
   * A new deploy of an earlier deploy's spec: `targetDeployId`, or by default the most recent
   * SUCCEEDED deploy before the active one. Atomic and without acceptance, since it goes back
   * to what served.
   */
  async rollback(
    requestId: string,
    message?: string,
    user?: string,
    targetDeployId?: string,
  ): Promise<{ record: RequestRecord; warnings: string[]; targetDeployId: string }> {
    return this.#write(requestId, async () => {
      const { store } = this.d;
      const record = await this.#live(requestId);
      const pending = await store.getPending(requestId);
      if (pending) throw conflict(`Request ${requestId} already has a pending deploy ${pending.deployId}`);
      if (!record.activeDeployId) throw conflict(`Request ${requestId} has no active deploy to roll back from`);
      const history = await store.listDeployHistory(requestId);
      let previous: (typeof history)[number] | undefined;
      if (targetDeployId !== undefined) {
        previous = history.find((e) => e.deployId === targetDeployId);
        if (!previous) throw notFound(`Deploy ${targetDeployId} of request ${requestId} not found`);
        if (targetDeployId === record.activeDeployId)
          throw conflict(`Deploy ${targetDeployId} is the active deploy of ${requestId} already`);
        if (previous.result?.deployState !== 'SUCCEEDED') {
          throw conflict(
            `Deploy ${targetDeployId} did not succeed (${previous.result?.deployState ?? 'no result'}); only a deploy that succeeded can be rolled back to`,
          );
        }
      } else {
        const current = history.findIndex((e) => e.deployId === record.activeDeployId);
        previous = history.slice(current + 1).find((e) => e.result?.deployState === 'SUCCEEDED' && e.deployId !== record.activeDeployId);
        if (current < 0 || !previous) {
          throw conflict(`Request ${requestId} has no earlier successful deploy than ${record.activeDeployId} to roll back to`);
        }
      }
      const used = new Set(history.map((e) => e.deployId));
      const old = previous.deploy;
      const deploy: Deploy = {
        ...old,
        id: rollbackId(old.id, used),
        canaryDeploySettings: (({ trafficSteps: _steps, maxLoadPerTaskRatio: _ratio, ...c }) => ({
          ...c,
          enableCanaryDeploy: false,
          acceptanceMode: 'NONE' as const,
        }))(old.canaryDeploySettings),
      };
      const input: DeployInput = { deploy, message: `Rollback to ${old.id}${message ? `: ${message}` : ''}` };
      return { ...(await this.#commitDeploy(input, await this.prepareDeploy(input), user)), targetDeployId: old.id };
    });
  }

  async #commitDeploy(input: DeployInput, prepared: PreparedDeploy, user?: string): Promise<{ record: RequestRecord; warnings: string[] }> {
    const { store, clock } = this.d;
    const { record, deploy, warnings } = prepared;
    const now = clock.now();
    const stored: Deploy = { ...deploy, timestamp: now };
    const next = createPendingDeploy(stored, record.request, now, {
      oldTasks: record.activeDeployId ? record.request.instances : 0,
      ...(input.message ? { message: input.message } : {}),
      ...(input.unpauseOnSuccessfulDeploy ? { unpauseOnSuccessfulDeploy: true } : {}),
      ...(input.updatedRequest ? { updatedRequest: input.updatedRequest } : {}),
    });
    const nextRecord: RequestRecord = {
      ...record,
      pendingDeployId: deploy.id,
      state: record.state === 'PAUSED' ? 'DEPLOYING_TO_UNPAUSE' : record.state,
      timestamp: now,
    };
    const marker = {
      requestId: deploy.requestId,
      deployId: deploy.id,
      timestamp: now,
      ...(input.message ? { message: input.message } : {}),
      ...(user !== undefined ? { user } : {}),
    };
    await store.apply({
      deploys: [{ deploy: stored, ...(input.message ? { message: input.message } : {}), ...(user !== undefined ? { user } : {}) }],
      pending: [next],
      requests: [nextRecord],
      webhookEvents: [deployEvent('STARTING', stored, marker, now)],
    });
    this.d.events.publish({
      type: 'DEPLOY',
      at: now,
      requestId: deploy.requestId,
      deployId: deploy.id,
      eventType: 'STARTING',
      progress: next.progress,
    });
    return { record: nextRecord, warnings };
  }

  /** Record an intent on the pending deploy `deployId` of `requestId`. */
  async deployIntent(requestId: string, deployId: string, intent: DeployIntent): Promise<void> {
    await this.#write(requestId, async () => {
      await this.#live(requestId);
      const pending = await this.d.store.getPending(requestId);
      if (!pending || pending.deployId !== deployId) {
        throw notFound(`Deploy ${deployId} of request ${requestId} is not pending`);
      }
      if (intent.kind === 'advance') {
        const deploy = await this.d.store.getDeploy(requestId, deployId);
        const manual =
          deploy?.canaryDeploySettings.acceptanceMode === 'MANUAL' ||
          (deploy?.canaryDeploySettings.acceptanceMode === 'CHECKS' && deploy.acceptanceChecks.some((c) => c.type === 'manual'));
        if (pending.progress.phase !== 'ACCEPTANCE' || !manual) {
          throw conflict(
            `Deploy ${deployId} is not waiting for a manual approval (phase ${pending.progress.phase}, acceptance ${deploy?.canaryDeploySettings.acceptanceMode})`,
          );
        }
      }
      if (intent.kind === 'update') {
        const record = await this.#live(requestId);
        const instances = (pending.updatedRequest ?? record.request).instances;
        if (intent.targetActiveInstances < 1 || intent.targetActiveInstances > instances) {
          throw badRequest(`targetActiveInstances: must be from 1 to ${instances}`, [
            { field: 'targetActiveInstances', rule: `1…${instances}` },
          ]);
        }
      }
      await this.d.store.apply({ pending: [{ ...pending, intents: [...pending.intents, intent] }] });
    });
  }

  async scale(
    requestId: string,
    scale: number | (ActionInput & { instances: number; bounce?: boolean }),
    user?: string,
  ): Promise<RequestRecord> {
    const body = typeof scale === 'number' ? { instances: scale } : scale;
    const { instances } = body;
    return this.#write(requestId, async () => {
      const record = await this.#live(requestId);
      if (instances === record.request.instances) {
        throw badRequest(`instances: request ${requestId} already has ${instances} instance(s)`, [
          { field: 'instances', rule: 'must change' },
        ]);
      }
      if (record.request.maxScale !== undefined && instances > record.request.maxScale) {
        throw badRequest(`instances: must be at most the request's maxScale (${record.request.maxScale})`, [
          { field: 'instances', rule: `<= ${record.request.maxScale}` },
        ]);
      }
      const pending = await this.d.store.getPending(requestId);
      if (pending?.updatedRequest) {
        throw conflict(`Request ${requestId} has a pending deploy ${pending.deployId} that carries an updatedRequest`);
      }
      if (record.request.requestType === 'SCHEDULED') {
        throw badRequest('instances: SCHEDULED requests run one instance (runs never overlap)', [
          { field: 'instances', rule: 'must be 1 for SCHEDULED' },
        ]);
      }
      const now = this.d.clock.now();
      let next: RequestRecord = { ...record, request: { ...record.request, instances }, timestamp: now };
      if (body.bounce && next.state === 'ACTIVE' && next.activeDeployId && !isRunToCompletion(next.request.requestType))
        next.bounce = { startedAt: now, ...(body.message ? { message: body.message } : {}) };
      // A new scale replaces an expiring one: its revert is to what the request had before either.
      const revertTo = record.expiring?.scale?.revertToInstances ?? record.request.instances;
      next = withExpiring(next, 'scale', body, now, user, { revertToInstances: revertTo, ...(body.bounce ? { bounce: true } : {}) });
      await this.d.store.apply({ requests: [next], webhookEvents: [requestEvent('SCALED', next.request, now)] });
      this.d.events.publish({ type: 'REQUEST', at: now, request: next });
      return next;
    });
  }

  async setState(
    requestId: string,
    action: 'pause' | 'unpause' | 'delete' | 'bounce',
    body: ActionInput = {},
    user?: string,
  ): Promise<RequestRecord> {
    return this.#write(requestId, async () => {
      const record = await this.#live(requestId);
      const now = this.d.clock.now();
      let next: RequestRecord;
      switch (action) {
        case 'pause':
          if (record.state === 'PAUSED') throw conflict(`Request ${requestId} is already paused`);
          if (record.state === 'DELETING') throw conflict(`Request ${requestId} is being deleted`);
          next = withExpiring({ ...record, state: 'PAUSED' }, 'pause', body, now, user);
          delete next.bounce;
          if (next.expiring?.bounce) next = dropExpiring(next, 'bounce');
          break;
        case 'unpause':
          if (record.state !== 'PAUSED') throw conflict(`Request ${requestId} is not paused (state ${record.state})`);
          next = dropExpiring({ ...record, state: 'ACTIVE' }, 'pause');
          delete next.backoff;
          break;
        case 'delete':
          next = { ...record, state: 'DELETING' };
          delete next.expiring;
          break;
        case 'bounce':
          if (record.state !== 'ACTIVE') throw conflict(`Request ${requestId} is not active (state ${record.state})`);
          if (!record.activeDeployId) throw conflict(`Request ${requestId} has no active deploy to bounce`);
          if (isRunToCompletion(record.request.requestType))
            throw conflict(`Request ${requestId} is a ${record.request.requestType}; its runs are not bounced`);
          next = withExpiring(
            { ...record, bounce: { startedAt: now, ...(body.message ? { message: body.message } : {}) } },
            'bounce',
            body,
            now,
            user,
          );
          break;
      }
      next.timestamp = now;
      const history: Record<typeof action, RequestHistoryType> = {
        pause: 'PAUSED',
        unpause: 'UNPAUSED',
        delete: 'DELETING',
        bounce: 'BOUNCED',
      };
      await this.d.store.apply({ requests: [next], webhookEvents: [requestEvent(history[action], next.request, now)] });
      this.d.events.publish({ type: 'REQUEST', at: now, request: next });
      return next;
    });
  }

  /**
   * Queue a run (SingularityRunNowRequest): ON_DEMAND runs wait while `instances` runs are
   * going; a SCHEDULED request runs now only when no run is going (409 otherwise, as Singularity).
   */
  async runNow(
    requestId: string,
    input: RunNowInput,
    user?: string,
  ): Promise<{ record: RequestRecord; queued: QueuedRun; deployId: string }> {
    return this.#write(requestId, async () => {
      const { store, clock } = this.d;
      const record = await this.#live(requestId);
      const type = record.request.requestType;
      if (type !== 'ON_DEMAND' && type !== 'SCHEDULED') {
        throw badRequest(`Request ${requestId} is a ${type}; run is for ON_DEMAND and SCHEDULED requests`, [
          { field: 'requestType', rule: 'ON_DEMAND or SCHEDULED' },
        ]);
      }
      if (record.state === 'PAUSED' || record.state === 'DEPLOYING_TO_UNPAUSE') {
        throw conflict(`Request ${requestId} is paused. Unable to run now (it must be manually unpaused first)`);
      }
      if (record.state !== 'ACTIVE') throw conflict(`Request ${requestId} is ${record.state}; it cannot run`);
      if (!record.activeDeployId) throw conflict(`Request ${requestId} has no active deploy to run`);
      const queue = record.jobs?.queue ?? [];
      if (type === 'SCHEDULED') {
        const live = await store.listTasks({ requestId, live: true });
        if (live.length > 0 || queue.length > 0) {
          throw conflict(`Cannot request immediate run of a scheduled job which is currently running (${live.length + queue.length})`);
        }
      }
      const max = this.d.maxQueuedRuns ?? 1000;
      if (queue.length >= max) throw conflict(`Request ${requestId} already has ${queue.length} runs waiting (the most is ${max})`);
      const runId = input.runId ?? this.d.newRunId?.() ?? `run-${clock.now()}`;
      if (queue.some((q) => q.runId === runId) || (await store.findTaskByRunId(requestId, runId))) {
        throw conflict(`Run ${runId} of request ${requestId} exists already; run ids are never reused`);
      }
      const now = clock.now();
      const queued: QueuedRun = {
        runId,
        trigger: type === 'SCHEDULED' ? 'IMMEDIATE' : 'ONEOFF',
        queuedAt: now,
        ...(input.commandLineArgs ? { commandLineArgs: input.commandLineArgs } : {}),
        ...(input.envOverrides ? { envOverrides: input.envOverrides } : {}),
        ...(input.resources ? { resources: input.resources } : {}),
        ...(input.message ? { message: input.message } : {}),
        ...(input.runAt !== undefined ? { runAt: input.runAt } : {}),
        ...(user !== undefined ? { user } : {}),
      };
      const next: RequestRecord = { ...record, jobs: { ...(record.jobs ?? {}), queue: [...queue, queued] }, timestamp: now };
      await store.apply({ requests: [next] });
      return { record: next, queued, deployId: record.activeDeployId };
    });
  }

  /** PUT .../skip-healthchecks: the request's skipHealthchecks, for a while when durationMillis is given. */
  async skipHealthchecks(requestId: string, body: ActionInput & { skipHealthchecks: boolean }, user?: string): Promise<RequestRecord> {
    return this.#write(requestId, async () => {
      const record = await this.#live(requestId);
      const now = this.d.clock.now();
      const before = record.expiring?.skipHealthchecks?.revertToSkipHealthchecks ?? record.request.skipHealthchecks ?? false;
      let next: RequestRecord = { ...record, request: { ...record.request, skipHealthchecks: body.skipHealthchecks }, timestamp: now };
      next = withExpiring(next, 'skipHealthchecks', body, now, user, { revertToSkipHealthchecks: before });
      await this.d.store.apply({ requests: [next] });
      this.d.events.publish({ type: 'REQUEST', at: now, request: next });
      return next;
    });
  }

  /** POST .../exit-cooldown: Fledge's cooldown is its crash-loop backoff; this clears it. */
  async exitCooldown(requestId: string): Promise<RequestRecord> {
    return this.#write(requestId, async () => {
      const record = await this.#live(requestId);
      if (!record.backoff || Object.keys(record.backoff).length === 0) {
        throw conflict(`Request ${requestId} is not in cooldown (no instance is backing off after crashes)`);
      }
      const now = this.d.clock.now();
      const next: RequestRecord = { ...record, timestamp: now };
      delete next.backoff;
      await this.d.store.apply({ requests: [next] });
      return next;
    });
  }

  /** DELETE .../scale, .../pause, .../bounce, .../skip-healthchecks: the change stays, its expiry is dropped. */
  async cancelExpiring(requestId: string, kind: ExpiringKind): Promise<RequestRecord> {
    return this.#write(requestId, async () => {
      const record = await this.#live(requestId);
      if (!record.expiring?.[kind]) throw notFound(`Request ${requestId} has no expiring ${kind}`);
      const next = { ...dropExpiring(record, kind), timestamp: this.d.clock.now() };
      await this.d.store.apply({ requests: [next] });
      return next;
    });
  }

  /** Kill a task; with waitForReplacement it is stopped only once its replacement serves. */
  async killTask(taskId: string, message?: string, waitForReplacement = false): Promise<void> {
    const task = await this.d.store.getTask(taskId);
    if (!task) throw notFound(`Task ${taskId} not found`);
    await this.#write(task.taskId.requestId, async () => {
      const current = await this.d.store.getTask(taskId);
      if (!current || !isLive(current.state)) throw conflict(`Task ${taskId} is not running (state ${current?.state})`);
      if (current.cleanup) return;
      const now = this.d.clock.now();
      if (waitForReplacement) {
        if (current.replaceRequested) return;
        const record = await this.d.store.getRequest(current.taskId.requestId);
        if (record?.activeDeployId !== current.taskId.deployId || record.state !== 'ACTIVE') {
          throw conflict(`Task ${taskId} is not a task of an active request's active deploy; it would not be replaced`);
        }
        await this.d.store.apply({ tasks: [{ ...current, replaceRequested: { timestamp: now, ...(message ? { message } : {}) } }] });
        return;
      }
      const killed: typeof current = {
        ...current,
        state: 'TASK_CLEANING',
        cleanup: { reason: 'USER_REQUESTED', timestamp: now, ...(message ? { message } : {}) },
        updates: [...current.updates, { state: 'TASK_CLEANING', timestamp: now, message: message ?? 'Killed by user' }],
      };
      await this.d.store.apply({ tasks: [killed], webhookEvents: taskEvents(current, killed) });
    });
  }
}

/** The parts of an action body an expiring action keeps. */
export interface ActionInput {
  message?: string;
  durationMillis?: number;
  extra?: Record<string, unknown>;
}

/** The record with `kind` set to expire (durationMillis given) or its old expiry dropped (not given). */
function withExpiring<K extends ExpiringKind>(
  record: RequestRecord,
  kind: K,
  body: ActionInput,
  now: number,
  user: string | undefined,
  more: Omit<NonNullable<NonNullable<RequestRecord['expiring']>[K]>, 'startMillis' | 'durationMillis'> | object = {},
): RequestRecord {
  if (body.durationMillis === undefined) return dropExpiring(record, kind);
  const actionId = typeof body.extra?.actionId === 'string' ? body.extra.actionId : undefined;
  const action = {
    startMillis: now,
    durationMillis: body.durationMillis,
    ...(user !== undefined ? { user } : {}),
    ...(body.message !== undefined ? { message: body.message } : {}),
    ...(actionId !== undefined ? { actionId } : {}),
    ...more,
  };
  return { ...record, expiring: { ...record.expiring, [kind]: action } };
}

function dropExpiring(record: RequestRecord, kind: ExpiringKind): RequestRecord {
  if (!record.expiring?.[kind]) return record;
  const rest = { ...record.expiring };
  delete rest[kind];
  const next: RequestRecord = { ...record, expiring: rest };
  if (Object.keys(rest).length === 0) delete next.expiring;
  return next;
}

function assertSupportedType(request: FledgeRequest): void {
  if (request.requestType !== 'SERVICE' && request.loadBalanced) {
    throw badRequest('loadBalanced: only SERVICE requests can be load balanced', [{ field: 'loadBalanced', rule: 'SERVICE only' }]);
  }
}

const LB_FIELDS = [
  'serviceBasePath',
  'loadBalancerGroups',
  'loadBalancerOptions',
  'loadBalancerDomains',
  'loadBalancerAdditionalRoutes',
  'loadBalancerServiceIdOverride',
] as const;

function lbDifferences(a: Deploy, b: Deploy): string[] {
  return LB_FIELDS.filter((f) => JSON.stringify(a[f] ?? null) !== JSON.stringify(b[f] ?? null));
}

const DEPLOY_ID_MAX = 50;

/** `<oldId>_rb<n>` with the lowest unused n, the old id shortened to keep within 50 characters. */
function rollbackId(oldId: string, used: ReadonlySet<string>): string {
  for (let n = 1; ; n++) {
    const suffix = `_rb${n}`;
    const id = `${oldId.slice(0, DEPLOY_ID_MAX - suffix.length)}${suffix}`;
    if (!used.has(id)) return id;
  }
}

/**
 * trafficSteps need a canary, a load balancer, and weights the instances can carry: refused
 * here with the numbers (the plan, POST /api/deploys/plan, runs this too).
 */
function assertTrafficPlan(deploy: Deploy, target: FledgeRequest, oldTasks: number): void {
  const canary = deploy.canaryDeploySettings;
  if (!canary.trafficSteps?.length) return;
  const field = 'deploy.canaryDeploySettings.trafficSteps';
  if (!canary.enableCanaryDeploy) {
    throw badRequest(`${field}: needs enableCanaryDeploy: true`, [{ field, rule: 'needs enableCanaryDeploy: true' }]);
  }
  if (!target.loadBalanced) {
    throw badRequest(`${field}: needs a load-balanced request (the shares are load-balancer weights)`, [
      { field, rule: 'needs loadBalanced' },
    ]);
  }
  const planned = planTraffic(
    canary.trafficSteps,
    oldTasks,
    target.instances,
    canary.maxLoadPerTaskRatio ?? DEFAULT_MAX_LOAD_PER_TASK_RATIO,
  );
  if ('problem' in planned) throw badRequest(`${planned.field}: ${planned.problem}`, [{ field: planned.field, rule: planned.problem }]);
}
