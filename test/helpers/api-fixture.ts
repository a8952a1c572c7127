// API-test fixture: the real Hono app and FledgeService over an in-memory SQLite store, with
// no loop (wake is recorded, nothing runs) and no runtime. Requests go through app.request(),
// so no port is opened; state the loop would have produced is written to the store directly.
import type { Hono } from 'hono';
import { createApp } from '../../src/api/app.ts';
import { FledgeService } from '../../src/api/service.ts';
import { parseInput, schemas } from '../../src/api/schemas/index.ts';
import { ManualClock } from '../../src/core/clock.ts';
import type { DeployResultState } from '../../src/core/deploy/types.ts';
import { EventBus } from '../../src/core/events.ts';
import type { Deploy, FledgeRequest, RequestRecord } from '../../src/core/model.ts';
import { silentLogger } from '../../src/logger.ts';
import { KeyedMutex } from '../../src/reconciler/locks.ts';
import type { Runtime } from '../../src/runtimes/types.ts';
import { Authenticator } from '../../src/auth/authenticator.ts';
import type { Role } from '../../src/auth/roles.ts';
import { TrustList } from '../../src/net/addresses.ts';
import { createStore } from '../../src/store/index.ts';
import type { Store } from '../../src/store/types.ts';
import { webhookAllowList } from '../../src/webhooks/allow.ts';

export interface ApiFixtureOptions {
  allowCanaryLbChange?: boolean;
  /** --prometheus-url and --prometheus-allow */
  prometheus?: { url?: string; allow: string[] };
  serverChecks?: string[];
  /** --no-auth */
  noAuth?: boolean;
  maxInstances?: number;
  maxBodyBytes?: number;
  allowedOrigins?: string[];
  allowedHosts?: string[];
  publicUrl?: string;
  eventsPingMillis?: number;
  /** --webhook-allow entries (default: any target) */
  webhookAllow?: string[];
  /** --max-queued-runs */
  maxQueuedRuns?: number;
}

export interface ApiResponse<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

// The API only touches the runtime to read sandbox logs; these tests never do.
const noRuntime = new Proxy({} as Runtime, {
  get(_target, name) {
    throw new Error(`the API fixture has no runtime (called ${String(name)})`);
  },
});

export class ApiFixture {
  private constructor(
    readonly store: Store,
    readonly service: FledgeService,
    readonly app: Hono,
    readonly clock: ManualClock,
    /** request ids the service woke the loop for */
    readonly woken: string[],
    /** an admin token; call() sends it unless told otherwise */
    readonly adminToken: string,
    readonly authenticator: Authenticator,
    /** what the app streams on /api/events */
    readonly events: EventBus,
  ) {}

  /** A new token with `role`, for tests of what each role may do. */
  async token(role: Role, name = `${role}-${Math.random().toString(36).slice(2, 8)}`): Promise<string> {
    return (await this.authenticator.create(name, role)).token;
  }

  static async create(options: ApiFixtureOptions = {}): Promise<ApiFixture> {
    const store = await createStore({ kind: 'memory' });
    const clock = new ManualClock();
    const woken: string[] = [];
    const events = new EventBus();
    const service = new FledgeService({
      store,
      locks: new KeyedMutex(),
      clock,
      events,
      wake: (id) => woken.push(id),
      allowCanaryLbChange: options.allowCanaryLbChange ?? false,
      ...(options.prometheus ? { prometheus: options.prometheus } : {}),
      serverChecks: () => options.serverChecks ?? [],
      ...(options.maxQueuedRuns !== undefined ? { maxQueuedRuns: options.maxQueuedRuns } : {}),
    });
    const authenticator = new Authenticator(store, clock);
    const { token: adminToken } = await authenticator.create('admin', 'admin');
    const app = createApp({
      store,
      service,
      runtime: noRuntime,
      events,
      clock,
      containers: false,
      logger: silentLogger,
      ...(options.eventsPingMillis !== undefined ? { eventsPingMillis: options.eventsPingMillis } : {}),
      ...(options.webhookAllow !== undefined ? { webhookAllow: webhookAllowList(options.webhookAllow) } : {}),
      security: {
        authenticator: options.noAuth ? undefined : authenticator,
        bindHost: '127.0.0.1',
        ...(options.publicUrl !== undefined ? { publicUrl: options.publicUrl } : {}),
        allowedHosts: options.allowedHosts ?? [],
        allowedOrigins: options.allowedOrigins ?? [],
        trustForwardedFrom: new TrustList([]),
        maxBodyBytes: options.maxBodyBytes ?? 1024 * 1024,
        maxInstances: options.maxInstances ?? 1000,
      },
    });
    return new ApiFixture(store, service, app, clock, woken, adminToken, authenticator, events);
  }

  /** `headers` may override the Authorization (or drop it with `authorization: ''`). */
  async call<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiResponse<T>> {
    const all: Record<string, string> = { authorization: `Bearer ${this.adminToken}` };
    if (body !== undefined) all['content-type'] = 'application/json';
    Object.assign(all, headers);
    for (const [k, v] of Object.entries(all)) if (v === '') delete all[k];
    const init: RequestInit = { method, headers: all };
    if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
    const res = await this.app.request(path, init);
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON (the UI, metrics): the text
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  post<T = Record<string, unknown>>(path: string, body?: unknown) {
    return this.call<T>('POST', path, body);
  }

  /** Creates (through the API) a SERVICE request. */
  async createRequest(id: string, more: Partial<FledgeRequest> = {}): Promise<void> {
    const res = await this.post('/api/requests', { id, requestType: 'SERVICE', instances: 2, ...more });
    if (res.status !== 200) throw new Error(`creating request ${id}: ${res.status} ${JSON.stringify(res.body)}`);
  }

  /**
   * Writes a finished deploy of `requestId` as the loop would have: the deploy, its result
   * and, when SUCCEEDED and `makeActive`, the request's active deploy id. `at` orders history.
   */
  async seedDeploy(
    requestId: string,
    deploy: Record<string, unknown>,
    options: { state?: DeployResultState; at: number; makeActive?: boolean },
  ): Promise<Deploy> {
    const parsed = parseInput(schemas.deploy(false), { requestId, command: 'node server.mjs', ...deploy });
    if (!parsed.ok) throw new Error(`seed deploy: ${parsed.message}`);
    const stored: Deploy = { ...parsed.value, timestamp: options.at };
    const state = options.state ?? 'SUCCEEDED';
    const record = (await this.store.getRequest(requestId)) as RequestRecord;
    const active = options.makeActive ?? state === 'SUCCEEDED';
    await this.store.apply({
      deploys: [{ deploy: stored }],
      results: [
        { requestId, deployId: stored.id, result: { deployState: state, message: state, deployFailures: [], timestamp: options.at } },
      ],
      ...(active ? { requests: [{ ...record, activeDeployId: stored.id, timestamp: options.at }] } : {}),
    });
    return stored;
  }
}

/** A minimal valid POST /api/deploys body. */
export function deployBody(requestId: string, id: string, deploy: Record<string, unknown> = {}, more: Record<string, unknown> = {}) {
  return { deploy: { requestId, id, command: 'node server.mjs', ...deploy }, ...more };
}
