// Runs acceptance checks at the edge and keeps their latest answers for the engine to observe.
// Answers live in memory: after a restart the checks are simply asked again (they are idempotent).
import type { CheckResult } from '../core/deploy/types.ts';
import { errorMessage } from '../core/errors.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/types.ts';
import type { Balancer, TrafficWindow } from '../balancers/types.ts';
import type { Check, CheckContext, CheckFactory } from '../checks/types.ts';
import { isLive, type Deploy } from '../core/model.ts';
import { inLb, serving } from '../core/tasks.ts';

export interface CheckRunnerDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  /** deploy-declared check types (http, command, …) */
  factories: Record<string, CheckFactory>;
  /** server-wide hooks applying to every CHECKS deploy */
  serverChecks: Check[];
  /** the balancer whose counters `lb` checks read */
  balancer?: Balancer;
}

export class CheckRunner {
  readonly #d: CheckRunnerDeps;
  /** `${requestId}/${deployId}` → name → latest answer */
  readonly #results = new Map<string, Map<string, CheckResult>>();

  constructor(deps: CheckRunnerDeps) {
    this.#d = deps;
  }

  get serverCheckNames(): string[] {
    return this.#d.serverChecks.map((c) => c.name);
  }

  get serverCheckIntervalSeconds(): number {
    return Math.min(5, ...this.#d.serverChecks.map((c) => c.intervalSeconds));
  }

  results(requestId: string, deployId: string): CheckResult[] {
    return [...(this.#results.get(`${requestId}/${deployId}`)?.values() ?? [])];
  }

  /** Ask each named check once (if its interval has passed), then call done. */
  async run(requestId: string, deployId: string, step: number, names: string[], done: () => void): Promise<void> {
    const { store, clock } = this.#d;
    const key = `${requestId}/${deployId}`;
    const answers = this.#results.get(key) ?? new Map<string, CheckResult>();
    this.#results.set(key, answers);
    const [record, deploy, pending] = await Promise.all([
      store.getRequest(requestId),
      store.getDeploy(requestId, deployId),
      store.getPending(requestId),
    ]);
    if (!record || !deploy || !pending || pending.deployId !== deployId) return;
    const tasks = await store.listTasks({ requestId, live: true });
    const taskIds = {
      newActive: tasks.filter((t) => t.taskId.deployId === deployId && t.health.state === 'HEALTHY' && !t.cleanup).map((t) => t.taskId),
      newInactive: tasks.filter((t) => t.taskId.deployId === deployId && (t.health.state !== 'HEALTHY' || t.cleanup)).map((t) => t.taskId),
      otherActive: tasks.filter((t) => t.taskId.deployId !== deployId && isLive(t.state) && !t.cleanup).map((t) => t.taskId),
    };
    // The old side: other deploys' live tasks that serve (in the LB, for a load-balanced request).
    const oldServing = tasks.filter((t) => t.taskId.deployId !== deployId && serving(t) && (!record.request.loadBalanced || inLb(t)));
    const oldDeployIds = [...new Set(oldServing.map((t) => t.taskId.deployId))].sort((a, b) =>
      a === record.activeDeployId ? -1 : b === record.activeDeployId ? 1 : 0,
    );
    const { balancer } = this.#d;
    const serviceId = deploy.loadBalancerServiceIdOverride ?? requestId;
    const base = {
      request: record.request,
      deploy,
      progress: pending.progress,
      step,
      taskIds,
      deployIds: { new: deployId, old: oldDeployIds },
      ...(balancer ? { traffic: (window: TrafficWindow) => balancer.traffic(serviceId, window) } : {}),
    };
    let asked = false;
    await Promise.all(
      names.map(async (name) => {
        const check = this.#checkFor(deploy, name);
        const previous = answers.get(name);
        const now = clock.now();
        if (previous && previous.step === step) {
          if (previous.state !== 'PENDING') return;
          const due = previous.at + (check?.intervalSeconds ?? 5) * 1000;
          if (now < due) return;
        }
        asked = true;
        const answer = check
          ? await this.#ask(check, base)
          : { state: 'FAILED' as const, message: `No check named ${name} is configured on this server` };
        answers.set(name, { deployId, step, name, state: answer.state, message: answer.message, at: clock.now() });
      }),
    );
    // The engine wakes itself when a PENDING check is due again; only new answers wake it now
    // (waking on nothing new would spin: the engine would ask again at once).
    if (asked) done();
  }

  #checkFor(deploy: Deploy, name: string): Check | undefined {
    const server = this.#d.serverChecks.find((c) => c.name === name);
    if (server) return server;
    const spec = deploy.acceptanceChecks.find((c) => c.name === name);
    if (!spec) return undefined;
    const factory = this.#d.factories[spec.type];
    return factory?.(spec);
  }

  async #ask(check: Check, context: Omit<CheckContext, 'signal' | 'now'>) {
    const signal = AbortSignal.timeout(check.timeoutSeconds * 1000);
    try {
      return await check.evaluate({ ...context, now: this.#d.clock.now(), signal });
    } catch (err) {
      this.#d.logger.warn({ err, check: check.name }, 'acceptance check threw');
      return check.failOnError
        ? { state: 'FAILED' as const, message: `Error: ${errorMessage(err)}` }
        : { state: 'SUCCEEDED' as const, message: `Ignored err: ${errorMessage(err)}` };
    }
  }
}
