import { isLive, type TaskRecord } from '../model.ts';
import { markCleanup } from '../tasks.ts';
import { newTasks, stepDeadline, type DecisionDraft, type End, type PhaseEffects, type PhaseInput } from './phase.ts';
import { describeExit, reasons } from './reasons.ts';
import type { DeployFailure } from './types.ts';

/**
 * New-task deaths and unhealthy verdicts not yet counted: each is counted against
 * allowedTasksFailuresPerGroup (an unhealthy task is also marked for cleanup). One too many
 * ends the deploy; a death after the step was healthy sends it back to LAUNCH to replace it.
 *
 * A task lost with its host (UNREACHABLE) is not counted: the host failed, not the version
 * being deployed, and failing the deploy would roll back onto a fleet that just lost a host.
 * (Singularity's deploy checker says it excludes framework and cluster issues, but counts every
 * stopped new task, lost ones included; Fledge does what the comment says.) It is replaced on
 * another host like a counted death (back to LAUNCH after the step was healthy), and the step
 * gets a fresh health deadline so the replacement has the usual time to become healthy.
 */
export function assessFailures(input: PhaseInput): PhaseEffects & { end?: End['end']; replace?: { observed: string; reason: string } } {
  const { progress, deploy, now } = input;
  const retried = progress.portInUseRetries ?? [];
  const counted = new Set([
    ...progress.failedDeployTasks.map((t) => t.id),
    ...(progress.lostDeployTasks ?? []).map((t) => t.id),
    ...retried.map((r) => r.taskId),
  ]);
  const allowed = deploy.canaryDeploySettings.allowedTasksFailuresPerGroup;
  const failures: DeployFailure[] = [];
  const cleanups: TaskRecord[] = [];
  const decisions: DecisionDraft[] = [];
  const forgiven: { taskId: string; instanceNo: number }[] = [];
  let stepFailures = progress.stepFailures;
  const lost: TaskRecord[] = [];
  for (const task of newTasks(input)) {
    if (counted.has(task.taskId.id)) continue;
    if (!isLive(task.state) && task.lostWithHost !== undefined) {
      lost.push(task);
      decisions.push({
        kind: 'TASK_LOST',
        taskId: task.taskId.id,
        host: task.lostWithHost,
        observed: `task ${task.taskId.id} was lost with host ${task.lostWithHost}`,
        action: 'replace it on another host',
        reason: 'a lost host is not the deploy’s failure: not counted against allowedTasksFailuresPerGroup',
      });
      continue;
    }
    // A port taken by another process between the runtime's check and the task's bind is not the
    // task's failure: it is started again (on other ports) without counting — a few times.
    const n = task.taskId.instanceNo;
    const earlier = retried.filter((r) => r.instanceNo === n).length + forgiven.filter((r) => r.instanceNo === n).length;
    if (!isLive(task.state) && !task.cleanup && task.portInUse && earlier < MAX_PORT_IN_USE_RETRIES) {
      forgiven.push({ taskId: task.taskId.id, instanceNo: n });
      decisions.push({
        kind: 'TASK_RETRIED',
        taskId: task.taskId.id,
        why: 'PORT_IN_USE',
        observed: `task ${task.taskId.id} could not bind a port another process took (EADDRINUSE)`,
        action: 'start it again on other ports',
        reason: `not the task's failure: not counted (${earlier + 1} of ${MAX_PORT_IN_USE_RETRIES} such retries for #${n})`,
      });
      continue;
    }
    let failure: DeployFailure | undefined;
    if (isLive(task.state) && !task.cleanup && task.health.state === 'UNHEALTHY') {
      const marked = markCleanup(task, 'UNHEALTHY', now, task.health.message);
      if (marked) cleanups.push(marked);
      failure = {
        reason: 'TASK_FAILED_HEALTH_CHECKS',
        taskId: task.taskId,
        message: task.health.message ?? reasons.neverHealthy(task.taskId.id),
      };
    } else if (!isLive(task.state) && !task.cleanup && task.lostWithHost === undefined) {
      const reason =
        task.state === 'TASK_FINISHED'
          ? 'TASK_EXPECTED_RUNNING_FINISHED'
          : task.state === 'TASK_LOST' && task.runningAt === undefined
            ? 'TASK_NEVER_ENTERED_RUNNING'
            : 'TASK_FAILED_ON_STARTUP';
      const how =
        task.state === 'TASK_ERROR'
          ? `could not start (${task.updates.at(-1)?.message ?? 'error'})`
          : task.state === 'TASK_LOST'
            ? 'was lost'
            : `${describeExit(task.exitCode, task.signal)}${task.portInUse ? ` (a port it needed was taken, ${MAX_PORT_IN_USE_RETRIES + 1} times)` : ''}`;
      failure = { reason, taskId: task.taskId, message: reasons.taskFailed(task.taskId.id, how) };
    }
    if (!failure) continue;
    stepFailures += 1;
    failures.push(failure);
    decisions.push({
      kind: 'TASK_FAILED',
      taskId: task.taskId.id,
      failure: failure.reason,
      observed: failure.message,
      action: 'count failure',
      reason:
        stepFailures > allowed
          ? `failure ${stepFailures} in this step; it tolerates ${allowed} (allowedTasksFailuresPerGroup)`
          : `failure ${stepFailures} of the ${allowed} this step tolerates (allowedTasksFailuresPerGroup)`,
    });
  }
  let next = progress;
  if (forgiven.length > 0) next = { ...next, portInUseRetries: [...retried, ...forgiven] };
  if (failures.length > 0) {
    next = { ...next, failedDeployTasks: [...next.failedDeployTasks, ...failures.map((f) => f.taskId!)], stepFailures };
  }
  if (lost.length > 0) {
    // A fresh health window for the replacements; past HEALTH the stored deadline is another
    // phase's (LB, acceptance) and is replaced, in LAUNCH/HEALTH it is only ever extended.
    const fresh = stepDeadline(deploy, now);
    const inHealth = progress.phase === 'LAUNCH' || progress.phase === 'HEALTH';
    const deadline = inHealth && next.deadline !== undefined ? Math.max(next.deadline, fresh) : fresh;
    next = { ...next, lostDeployTasks: [...(next.lostDeployTasks ?? []), ...lost.map((t) => t.taskId)], deadline };
  }
  const effects: PhaseEffects = { progress: next, tasks: cleanups, decisions };
  if (stepFailures > allowed && failures.length > 0) {
    const message = allowed > 0 ? reasons.tooManyFailures(allowed) : (failures[0]?.message ?? 'Task failed');
    return { ...effects, end: { state: 'FAILED', message, failures } };
  }
  const uncounted = lost.length + forgiven.length;
  if ((failures.length > 0 || uncounted > 0) && progress.phase !== 'LAUNCH' && progress.phase !== 'HEALTH') {
    // A task died after its step was healthy: go back and replace it before moving on.
    return {
      ...effects,
      progress: { ...effects.progress, stepReadyAt: undefined },
      replace:
        failures.length > 0
          ? { observed: `${failures.length} task(s) failed`, reason: 'replace failed tasks (allowed by allowedTasksFailuresPerGroup)' }
          : lost.length > 0
            ? { observed: `${lost.length} task(s) lost with their host`, reason: 'replace lost tasks on other hosts' }
            : { observed: `${forgiven.length} task(s) found a port taken`, reason: 'start them again on other ports' },
    };
  }
  return effects;
}

/** Port-taken deaths of one instance forgiven in a deploy; the next counts as a failure. */
export const MAX_PORT_IN_USE_RETRIES = 3;
