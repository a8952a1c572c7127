// What a phase of the deploy step sees, what it returns, and the helpers phases share.
// Phases import this module and step.ts imports the phases: nothing imports step.ts back.
import type { Deploy, FledgeRequest, TaskRecord } from '../model.ts';
import { healthWindowMillis } from '../health.ts';
import { Placer } from '../placement.ts';
import { createTask, healthy, inLb, serving } from '../tasks.ts';
import type { TaskView } from '../task-view.ts';
import type {
  Action,
  DecisionCounts,
  DecisionDetail,
  DeployFailure,
  DeployPhase,
  DeployProgress,
  DeployResultState,
  PendingDeploy,
  RequestObservation,
} from './types.ts';

/** The world as one phase sees it. Read-only: a phase returns its changes. */
export interface PhaseInput {
  now: number;
  obs: RequestObservation;
  deploy: Deploy;
  pending: PendingDeploy;
  progress: DeployProgress;
  /** tasks of the request, with the changes of this step so far */
  tasks: TaskView;
  /** instances of the request once this deploy succeeds */
  instances: number;
  /** task records this phase may still create in this pass (EngineSettings.launchBatchSize) */
  launchBudget: number;
}

/** A decision-log entry as a phase writes it; the step stamps time, phase, step and counts. */
export type DecisionDraft = DecisionDetail & { observed: string; action: string; reason: string };

/** What every phase result carries: the progress after it and its changes, all optional but progress. */
export interface PhaseEffects {
  progress: DeployProgress;
  /** task records created or changed, in order */
  tasks?: readonly TaskRecord[];
  actions?: readonly Action[];
  decisions?: readonly DecisionDraft[];
  /** look again by then, whatever the phase decided */
  wakeAt?: number;
}

/** Move on to another phase in this same step; the step logs the change with this text. */
export interface MoveTo {
  to: DeployPhase;
  observed: string;
  reason: string;
  operationId?: string;
}

/** Not done yet: why, and when to look again (absent: when something changes). */
export interface Wait {
  wait: { why: string; until?: number };
}

export interface End {
  end: { state: DeployResultState; message: string; failures?: DeployFailure[]; intent?: 'cancel' | 'reject' };
}

export type PhaseResult = PhaseEffects & (MoveTo | Wait | End);

/** The request as it will be once this deploy succeeds. */
export function targetRequest(obs: RequestObservation): FledgeRequest {
  return obs.pending?.updatedRequest ?? obs.request;
}

/** What the task helpers below read of a PhaseInput. */
type TasksSeen = Pick<PhaseInput, 'tasks' | 'pending' | 'obs' | 'progress'>;

/** tasks of the pending deploy */
export const newTasks = (input: TasksSeen) => input.tasks.ofDeploy(input.pending.deployId);
/** tasks of the active deploy */
export const oldTasks = (input: TasksSeen) => input.tasks.ofDeploy(input.obs.activeDeploy?.id);
/** Live, serving new tasks (not being stopped). */
export const servingNew = (input: TasksSeen) => newTasks(input).filter(serving);
export const healthyNew = (input: TasksSeen) => newTasks(input).filter(healthy);

/** OVERDUE deadline of a step: deployHealthTimeoutSeconds plus the health-check window. */
export function stepDeadline(deploy: Deploy, from: number): number {
  return (
    from + deploy.deployHealthTimeoutSeconds * 1000 + healthWindowMillis(deploy.healthcheck, deploy.considerHealthyAfterRunningForSeconds)
  );
}

/**
 * A placer over the hosts for new tasks of this request, counting what the step created so far
 * (the snapshots already count every persisted task).
 */
export function placerFor(obs: RequestObservation, tasks: TaskView, instances: number, request = targetRequest(obs)): Placer {
  const persisted = new Set(obs.tasks.map((t) => t.taskId.id));
  return new Placer({
    request,
    instances,
    defaultPlacement: obs.settings.defaultAgentPlacement,
    hosts: obs.hosts,
    tasks: tasks.all(),
    counted: (id) => persisted.has(id),
    deploys: [obs.activeDeploy, obs.pendingDeploy],
  });
}

/**
 * New task records for up to `count` lowest free instance numbers, each on the host placement
 * chose (and a start action), or on none yet with the reason (no action: it waits for a host).
 */
export function launchTasks(input: PhaseInput, count: number): { tasks: TaskRecord[]; actions: Action[] } {
  const used = new Set(servingNew(input).map((t) => t.taskId.instanceNo));
  const taken = input.tasks.ids();
  const tasks: TaskRecord[] = [];
  const wanted = Math.min(count, input.launchBudget);
  const placer = wanted > 0 ? placerFor(input.obs, input.tasks, input.instances) : undefined;
  for (let n = 1; placer && tasks.length < wanted; n++) {
    if (used.has(n)) continue;
    const where = placer.place(input.deploy);
    const task = createTask(input.deploy, n, input.now, taken, where.ok ? where : { waiting: where.reason });
    taken.add(task.taskId.id);
    tasks.push(task);
  }
  return {
    tasks,
    actions: tasks.filter((t) => t.waitingReason === undefined).map((t) => ({ kind: 'startTask', taskId: t.taskId.id })),
  };
}

export const instanceList = (tasks: readonly TaskRecord[]) => tasks.map((t) => `#${t.taskId.instanceNo}`).join(', ');

/** "launch #1, #2 on d1; #3 on d2" — and which wait for a host, with the first reason. */
export function launchAction(tasks: readonly TaskRecord[]): string {
  const byHost = new Map<string, TaskRecord[]>();
  const waiting: TaskRecord[] = [];
  for (const t of tasks) {
    if (t.waitingReason !== undefined) waiting.push(t);
    else byHost.set(t.taskId.host, [...(byHost.get(t.taskId.host) ?? []), t]);
  }
  const placed = [...byHost].map(([host, ts]) => `${instanceList(ts)} on ${host}`).join('; ');
  return [
    ...(placed ? [`launch ${placed}`] : []),
    ...(waiting.length > 0 ? [`${instanceList(waiting)} wait(s) for a host: ${waiting[0]!.waitingReason}`] : []),
  ].join('; ');
}

/** The counts stamped on every decision. */
export function countTasks(input: TasksSeen): DecisionCounts {
  const fresh = healthyNew(input);
  const old = oldTasks(input).filter(healthy);
  return {
    wanted: input.progress.targetActiveInstances,
    accepted: input.progress.currentActiveInstances,
    newHealthy: fresh.length,
    newInLb: fresh.filter(inLb).length,
    oldHealthy: old.length,
    oldInLb: old.filter(inLb).length,
  };
}
