// Acceptance checks (deploys.md §4): server hooks and deploy-declared checks share this contract.
import type { DeployProgress } from '../core/deploy/types.ts';
import type { AcceptanceCheckSpec, Deploy, FledgeRequest, TaskId } from '../core/model.ts';
import type { ServiceTraffic, TrafficWindow } from '../balancers/traffic.ts';

export interface CheckContext {
  request: FledgeRequest;
  deploy: Deploy;
  progress: DeployProgress;
  step: number;
  taskIds: { newActive: TaskId[]; newInactive: TaskId[]; otherActive: TaskId[] };
  /** the deploy being accepted, and the deploys of the other live tasks (the active one first) */
  deployIds: { new: string; old: string[] };
  /**
   * The balancer's own counters for this request's LB service over the last `windowMs`;
   * absent when this server runs no balancer.
   */
  traffic?: (window: TrafficWindow) => Promise<ServiceTraffic>;
  /** when the check is asked (epoch ms, the scheduler's clock: the balancer's counters run on it too) */
  now: number;
  /** aborts when the check's timeout passes */
  signal: AbortSignal;
}

export interface CheckAnswer {
  state: 'PENDING' | 'SUCCEEDED' | 'FAILED';
  message: string;
}

export interface Check {
  readonly name: string;
  /** how often a PENDING check is asked again */
  readonly intervalSeconds: number;
  readonly timeoutSeconds: number;
  readonly failOnError: boolean;
  evaluate(context: CheckContext): Promise<CheckAnswer>;
}

export type CheckFactory = (spec: AcceptanceCheckSpec) => Check;
