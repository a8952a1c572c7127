// Component-test fixture: the real loop, service and an in-memory SQLite store, with the fake
// runtime, fake balancer, fake health and a steppable clock. Drive it with settle()/advance().
// The runtime is the real host registry and composite runtime over one fake runtime per host
// (by default the process host `local` alone), so placement runs as it does in a server.
import { createFakeBalancer, type FakeBalancer } from '../../src/balancers/fake/index.ts';
import { FledgeService } from '../../src/api/service.ts';
import { parseInput, schemas } from '../../src/api/schemas/index.ts';
import type { Check, CheckFactory } from '../../src/checks/types.ts';
import { ManualClock } from '../../src/core/clock.ts';
import type { EngineSettings, PendingDeploy } from '../../src/core/deploy/types.ts';
import type { Deploy, FledgeRequest, RequestRecord, TaskRecord } from '../../src/core/model.ts';
import { isLive } from '../../src/core/model.ts';
import { FakeHealth } from '../../src/health/index.ts';
import { HostRegistry, HostRuntime, type HostEntry } from '../../src/hosts/index.ts';
import type { HostDefinition } from '../../src/hosts/types.ts';
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
  defaultAgentPlacement: 'GREEDY',
};

/** A host of the fixture: `local` runs processes, any other id is a Docker host (of fake containers). */
export interface FixtureHost {
  id: string;
  capacity?: { cpus: number; memoryMb: number };
  attributes?: Record<string, string>;
  reservedAttributes?: Record<string, string>;
  portRange?: { from: number; to: number };
}

export interface FixtureOptions {
  serverChecks?: Check[];
  factories?: Record<string, CheckFactory>;
  allowCanaryLbChange?: boolean;
  capacity?: { cpus: number; memoryMb: number };
  /** run the loop on its own wakes and timers (default: the test drives tick()) */
  timers?: boolean;
  /** the hosts (default: `local` alone, with `capacity`) */
  hosts?: FixtureHost[];
  settings?: Partial<EngineSettings>;
  /** the loop's tick (how long a pass runs before it yields); default the loop's */
  tickMillis?: number;
}

export class EngineFixture {
  readonly clock = new ManualClock();
  readonly health = new FakeHealth();
  /** the first host's fake runtime (`local` by default), for scripting */
  runtime!: FakeRuntime;
  /** every host's fake runtime, by host id */
  readonly runtimes = new Map<string, FakeRuntime>();
  registry!: HostRegistry;
  /** hosts whose pings fail (they become UNREACHABLE after the registry's timeout) */
  readonly silent = new Set<string>();
  balancer!: FakeBalancer;
  store!: Store;
  loop!: ReconcileLoop;
  service!: FledgeService;
  checks!: CheckRunner;

  constructor(private readonly options: FixtureOptions = {}) {}

  async start(): Promise<this> {
    this.store = await createStore({ kind: 'memory' }, () => this.clock.now());
    for (const h of this.hostList()) {
      this.runtimes.set(
        h.id,
        createFakeRuntime({
          now: () => this.clock.now(),
          ...(h.capacity ? { capacity: h.capacity } : {}),
          ...(h.portRange ? { portRange: h.portRange } : {}),
        }),
      );
    }
    this.runtime = this.runtimes.values().next().value as FakeRuntime;
    this.balancer = createFakeBalancer({ now: () => this.clock.now() });
    await this.boot();
    return this;
  }

  hostList(): FixtureHost[] {
    return this.options.hosts ?? [{ id: 'local', ...(this.options.capacity ? { capacity: this.options.capacity } : {}) }];
  }

  /** (Re)build the loop over the same store, runtime and balancer: a scheduler restart. */
  async boot(): Promise<void> {
    await this.registry?.close();
    const entries: HostEntry[] = this.hostList().map((h) => {
      const definition: HostDefinition = {
        id: h.id,
        kind: h.id === 'local' ? 'process' : 'docker',
        address: h.id === 'local' ? '127.0.0.1' : `10.0.0.${this.hostList().indexOf(h) + 1}`,
        portRange: h.portRange ?? { from: 31000, to: 31999 },
        capacity: h.capacity ?? {},
        attributes: { ...h.attributes, ...h.reservedAttributes },
        reservedAttributes: h.reservedAttributes ?? {},
      };
      const ping =
        definition.kind === 'docker'
          ? async () => {
              if (this.silent.has(h.id)) throw new Error('connection refused');
            }
          : undefined;
      return { definition, runtime: this.runtimes.get(h.id)!, ...(ping ? { ping } : {}) };
    });
    this.registry = new HostRegistry(entries, {
      store: this.store,
      clock: this.clock,
      logger: silentLogger,
      unreachableMs: 10_000,
      pingIntervalMs: 3_600_000,
    });
    await this.registry.start();
    this.checks = new CheckRunner({
      store: this.store,
      clock: this.clock,
      logger: silentLogger,
      factories: this.options.factories ?? {},
      serverChecks: this.options.serverChecks ?? [],
      balancer: this.balancer,
    });
    this.loop = new ReconcileLoop({
      store: this.store,
      runtime: new HostRuntime(this.registry),
      hosts: this.registry,
      balancer: this.balancer,
      health: this.health,
      checks: this.checks,
      clock: this.clock,
      logger: silentLogger,
      settings: {
        ...TEST_SETTINGS,
        serverChecks: this.checks.serverCheckNames,
        serverCheckIntervalSeconds: this.checks.serverCheckIntervalSeconds,
        ...this.options.settings,
      },
      timers: this.options.timers ?? false,
      // No safety pass during a test: every pass it sees is one something asked for.
      safetyTickMillis: 3_600_000,
      ...(this.options.tickMillis !== undefined ? { tickMillis: this.options.tickMillis } : {}),
    });
    const executor = this.loop.executor;
    this.health.bind((taskId, result, assessment) => void executor.onHealthResult(taskId, result, assessment));
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

  /** Move the clock forward, ping the hosts, and settle (deadlines and wake times fire). */
  async advance(ms: number): Promise<void> {
    this.clock.advance(ms);
    await this.registry.tick();
    await this.settle();
  }

  /** A host stops answering its pings, or answers again (seen at the next advance()). */
  setSilent(hostId: string, silent: boolean): void {
    if (silent) this.silent.add(hostId);
    else this.silent.delete(hostId);
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
    const containers = this.hostList().some((h) => h.id !== 'local');
    const parsed = parseInput(schemas.deployRequest(containers), { deploy: { command: 'serve', ...deploy }, ...body });
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
    await this.registry.close();
    await this.store.close();
  }
}

export function lbFields(request?: Partial<FledgeRequest>): Record<string, unknown> {
  return request?.loadBalanced ? { serviceBasePath: '/svc', loadBalancerGroups: ['default'] } : {};
}

export async function engineFixture(options?: FixtureOptions): Promise<EngineFixture> {
  return new EngineFixture(options).start();
}
