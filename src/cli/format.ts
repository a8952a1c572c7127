// Human-readable renderings of API answers, shared by commands and --watch.
import type { Decision, DeployProgress, PendingDeployView, RequestParent, TaskView } from '../api/client.ts';
import type { TaskLbState } from '../core/model.ts';

/** UTC so output does not depend on the machine's zone. */
export function dateTime(ms: number | undefined): string {
  return ms === undefined ? '-' : new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

export function clockTime(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

export function progressText(p: DeployProgress): string {
  // Says what each number counts: new tasks wanted by the step's end, and accepted by earlier steps.
  return `step ${p.step}/${p.totalSteps} ${p.phase}, new tasks: ${p.targetActiveInstances} wanted, ${p.currentActiveInstances} accepted`;
}

export function decisionText(d: Decision): string {
  return `${clockTime(d.at)} ${d.phase} step ${d.step}: ${d.observed} → ${d.action} (${d.reason})`;
}

export function lbText(lb: TaskLbState | undefined): string {
  if (!lb) return '-';
  const parts = [lb.add ? `add ${lb.add.state}` : undefined, lb.remove ? `remove ${lb.remove.state}` : undefined].filter(Boolean);
  return parts.length > 0 ? parts.join(', ') : '-';
}

export function healthText(t: TaskView): string {
  const state = t.health?.state ?? '-';
  const failing = t.health?.consecutiveFailures ?? 0;
  // Healthy, but its latest checks while running failed: on its way to being replaced.
  return state === 'HEALTHY' && failing > 0 ? `${state} (${failing} failed)` : state;
}

/** How long ago `at` was, in words: "4 s ago", "3 min ago", "2 h ago". */
export function ageText(at: number | undefined, now: number): string {
  if (at === undefined) return '-';
  const s = Math.max(0, Math.floor((now - at) / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

/** The checks of a task in one line: when the latest ended, how many failed in a row, in all. */
export function checksText(t: TaskView, now: number): string {
  const h = t.health;
  if (!h || h.lastCheckAt === undefined) return '-';
  const inARow = h.consecutiveFailures ?? 0;
  return `last ${dateTime(h.lastCheckAt)} (${ageText(h.lastCheckAt, now)}), ${inARow} failed in a row, ${h.checks ?? 0} in all (${h.failedChecks ?? 0} failed)`;
}

/** Why a task is not simply running: being stopped, or waiting for capacity. */
export function taskNote(t: TaskView): string {
  if (t.cleanup) return `cleanup ${t.cleanup.reason}${t.cleanup.message ? `: ${t.cleanup.message}` : ''}`;
  if (t.waitingReason) return `waiting: ${t.waitingReason}`;
  if (t.health?.state === 'UNHEALTHY' && t.health.message) return t.health.message;
  return '';
}

export function taskLine(t: TaskView): string {
  const note = taskNote(t);
  return `task ${t.taskId.id} #${t.taskId.instanceNo} ${t.state} health ${healthText(t)} lb ${lbText(t.lb ?? t.loadBalancerState)}${note ? ` (${note})` : ''}`;
}

/** Healthy against wanted; tasks beyond it (a canary's or a bounce's) named as surge, never "5/4". */
export function instancesText(parent: RequestParent, noun = ''): string {
  const desired = parent.instanceCounts?.desired ?? parent.request.instances;
  const healthy = parent.instanceCounts?.healthy ?? parent.taskIds?.healthy.length ?? 0;
  return healthy > desired ? `${desired}/${desired}${noun} +${healthy - desired} surge` : `${healthy}/${desired}${noun}`;
}

export function pendingText(pending: PendingDeployView | undefined): string {
  if (!pending) return '-';
  return `${pending.deployMarker.deployId} (${progressText(pending.deployProgress)})`;
}

/** One line after a write: where the request stands now. */
export function requestLine(parent: RequestParent): string {
  const active = parent.requestDeployState?.activeDeploy?.deployId ?? parent.activeDeploy?.id;
  const pending = parent.pendingDeployState;
  return [
    `request ${parent.request.id}: ${parent.state}`,
    instancesText(parent, ' healthy'),
    `active deploy ${active ?? '-'}`,
    ...(pending ? [`pending deploy ${pendingText(pending)}`] : []),
  ].join(', ');
}
