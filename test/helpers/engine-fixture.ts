// Component-test fixture: the real loop, service and an in-memory SQLite store, with the fake
// runtime, fake balancer, fake health and a steppable clock. Drive it with settle()/advance().
import { createFakeBalancer, type FakeBalancer } from '../../src/balancers/fake/index.ts';
import { FledgeService } from '../../src/api/service.ts';
import { parseInput, schemas } from '../../src/api/schemas/index.ts';
import type { Check, CheckFactory } from '../../src/checks/types.ts';
import { ManualClock } from '../../src/core/clock.ts';
import type { EngineSettings, PendingDeploy } from '../../src/core/deploy/types.ts';
import type { Deploy, FledgeRequest, RequestRecord, TaskRecord } from '../../src/core/model.ts';
import { isLive } from '../../src/core/model.ts';
import { FakeHealth } from '../../src/health/fake.ts';
import { silentLogger } from '../../src/logger.ts';
import { CheckRunner } from '../../src/reconciler/checks.ts';
import { ReconcileLoop } from '../../src/reconciler/loop.ts';
import { createFakeRuntime, type FakeRuntime } from '../../src/runtimes/fake/index.ts';
import { createStore } from '../../src/store/index.ts';
import type { DeployHistoryEntry, Store } from '../../src/store/types.ts';

export const TEST_SETTINGS: EngineSettings = {
  killGraceMillis: 1000,
  backoffBaseMillis: 1000,
  backoffMaxMillis: 60_000,
  capacityRetryMillis: 1000,
  decisionLogLimit: 500,
  launchBatchSize: 100,
  serverChecks: [],
  serverCheckIntervalSeconds: 5,
};

export interface FixtureOptions {
  serverChecks?: Check[];
  factories?: Record<string, CheckFactory>;
  allowCanaryLbChange?: boolean;
  capacity?: { cpus: number; memoryMb: number };
  /** run the loop on its own wakes and timers (default: the test drives tick()) */
  timers?: boolean;
}

export class EngineFixture {
  readonly clock = new ManualClock();
  readonly health = new FakeHealth();
  runtime!: FakeRuntime;
  balancer!: FakeBalancer;
  store!: Store;
  loop!: ReconcileLoop;
  service!: FledgeService;
  checks!: CheckRunner;

  constructor(private readonly options: FixtureOptions = {}) {}

  async start(): Promise<this> {
    this.store = await createStore({ kind: 'memory' }, () => this.clock.now());
    this.runtime = createFakeRuntime({
      now: () => this.clock.now(),
      ...(this.options.capacity ? { capacity: this.options.capacity } : {}),
    });
    this.balancer = createFakeBalancer();
    await this.boot();
    return this;
  }

  /** (Re)build the loop over the same store, runtime and balancer: a scheduler restart. */
  async boot(): Promise<void> {
    this.checks = new CheckRunner({
      store: this.store,
      clock: this.clock,
      logger: silentLogger,
      factories: this.options.factories ?? {},
      serverChecks: this.options.serverChecks ?? [],
    });
    this.loop = new ReconcileLoop({
      store: this.store,
      runtime: this.runtime,
      balancer: this.balancer,
      health: this.health,
      checks: this.checks,
      clock: this.clock,
      logger: silentLogger,
      settings: {
        ...TEST_SETTINGS,
        serverChecks: this.checks.serverCheckNames,
        serverCheckIntervalSeconds: this.checks.serverCheckIntervalSeconds,
      },
      timers: this.options.timers ?? false,
      // No safety pass during a test: every pass it sees is one something asked for.
      safetyTickMillis: 3_600_000,
    });
    const executor = this.loop.executor;
    this.health.bind(
      (taskId, state, message) => void executor.onHealthResult(taskId, undefined, { state, ...(message ? { message } : {}) }),
    );
    this.service = new FledgeService({
      store: this.store,
      locks: this.loop.locks,
      clock: this.clock,
      events: this.loop.events,
      wake: (id) => this.loop.wake(id),
      allowCanaryLbChange: this.options.allowCanaryLbChange ?? false,
    });
    await this.loop.start();
    await this.settle();
  }

  /** Simulate SIGKILL of the scheduler: drop the loop without closing anything. */
  async crash(): Promise<void> {
    await this.loop.idle();
  }

  /** Run the loop and the actions it starts until nothing is left to do at this instant. */
  async settle(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      this.loop.wakeDue();
      await this.loop.tick();
      await this.loop.idle();
      // let fake-health microtasks and scripted exits land
      await new Promise((r) => setImmediate(r));
      if (!this.loop.hasWork) return;
    }
    throw new Error('loop did not settle in 200 rounds');
  }

  /** Move the clock forward and settle (deadlines and wake times fire). */
  async advance(ms: number): Promise<void> {
    this.clock.advance(ms);
    await this.settle();
  }

  async createRequest(overrides: Partial<FledgeRequest> & { id: string }): Promise<RequestRecord> {
    const parsed = parseInput(schemas.request, { requestType: 'SERVICE', ...overrides });
    if (!parsed.ok) throw new Error(parsed.message);
    const record = await this.service.saveRequest(parsed.value);
    await this.settle();
    return record;
  }

  /** POST /api/deploys with a deploy JSON (Singularity shape), parsed by the real schema. */
  async deploy(deploy: Record<string, unknown>, body: Record<string, unknown> = {}): Promise<void> {
    const parsed = parseInput(schemas.deployRequest(false), { deploy: { command: 'serve', ...deploy }, ...body });
    if (!parsed.ok) throw new Error(parsed.message);
    await this.service.createDeploy(parsed.value);
    await this.settle();
  }

  /** A request with an active deploy `d1` of `instances` healthy tasks. */
  async activeRequest(id: string, instances: number, extra: { request?: Partial<FledgeRequest>; deploy?: Record<string, unknown> } = {}) {
    await this.createRequest({ id, instances, ...extra.request });
    await this.deploy({ requestId: id, id: 'd1', ...lbFields(extra.request), ...extra.deploy });
    const result = await this.result(id, 'd1');
    if (result?.deployState !== 'SUCCEEDED') throw new Error(`setup deploy ended ${result?.deployState}: ${result?.message}`);
  }

  async tasks(requestId: string, deployId?: string): Promise<TaskRecord[]> {
    const all = await this.store.listTasks({ requestId, ...(deployId ? { deployId } : {}), live: true });
    return all.filter((t) => isLive(t.state));
  }

  /** live, not being stopped */
  async serving(requestId: string, deployId?: string): Promise<TaskRecord[]> {
    return (await this.tasks(requestId, deployId)).filter((t) => !t.cleanup);
  }

  async allTasks(requestId: string): Promise<TaskRecord[]> {
    return this.store.listTasks({ requestId });
  }

  async pending(requestId: string): Promise<PendingDeploy | undefined> {
    return this.store.getPending(requestId);
  }

  async history(requestId: string, deployId: string): Promise<DeployHistoryEntry | undefined> {
    return this.store.getDeployHistory(requestId, deployId);
  }

  async result(requestId: string, deployId: string) {
    return (await this.history(requestId, deployId))?.result;
  }

  async request(requestId: string): Promise<RequestRecord | undefined> {
    return this.store.getRequest(requestId);
  }

  async activeDeploy(requestId: string): Promise<Deploy | undefined> {
    const record = await this.request(requestId);
    return record?.activeDeployId ? this.store.getDeploy(requestId, record.activeDeployId) : undefined;
  }

  instances(tasks: TaskRecord[]): number[] {
    return tasks.map((t) => t.taskId.instanceNo).sort((a, b) => a - b);
  }

  /** Upstream task ids the balancer has for a service. */
  async lbMembers(serviceId: string): Promise<string[]> {
    return (await this.balancer.upstreams(serviceId)).map((u) => u.taskId).sort();
  }

  async close(): Promise<void> {
    await this.loop.close();
    await this.store.close();
  }
}

export function lbFields(request?: Partial<FledgeRequest>): Record<string, unknown> {
  return request?.loadBalanced ? { serviceBasePath: '/svc', loadBalancerGroups: ['default'] } : {};
}

export async function engineFixture(options?: FixtureOptions): Promise<EngineFixture> {
  return new EngineFixture(options).start();
}
