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
import { createStore } from '../../src/store/index.ts';
import type { Store } from '../../src/store/types.ts';

export interface ApiFixtureOptions {
  allowCanaryLbChange?: boolean;
  serverChecks?: string[];
}

export interface ApiResponse<T = Record<string, unknown>> {
  status: number;
  body: T;
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
  ) {}

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
      serverChecks: () => options.serverChecks ?? [],
    });
    const app = createApp({ store, service, runtime: noRuntime, events, clock, containers: false, logger: silentLogger });
    return new ApiFixture(store, service, app, clock, woken);
  }

  async call<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      init.headers = { 'content-type': 'application/json' };
    }
    const res = await this.app.request(path, init);
    return { status: res.status, body: (await res.json()) as T };
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
