// A deploy's timeline: each step with its phases (start, end, what was decided), the task
// counts of the step, LB operations and acceptance results; and the full decision log.
import type { ReactNode } from 'react';
import type { Deploy } from '../core/model.ts';
import { Badge, Time } from './components.tsx';
import { duration, humanState, PHASE_LABELS } from './format.ts';
import { useNow } from './hooks.ts';
import { buildTimeline, type PhaseSpan, type StepSpan } from './timeline-model.ts';
import type { Decision, DeployProgress, TaskView } from './types.ts';

interface Counts {
  live: number;
  healthy: number;
  inLb: number;
}

function countTasks(tasks: TaskView[], deployId: string | undefined): Counts {
  const mine = tasks.filter((t) => t.taskId.deployId === deployId && !t.cleanup && isLiveState(t.state));
  return {
    live: mine.length,
    healthy: mine.filter((t) => t.health.state === 'HEALTHY').length,
    inLb: mine.filter((t) => t.lb.add?.state === 'SUCCESS' && t.lb.remove?.state !== 'SUCCESS').length,
  };
}

/**
 * Tasks of the new and of other (old) deploys that were running at `at`: started by then and
 * not yet ended (`doneAt`) nor told to stop (`cleanup`) by then.
 */
export function runningAt(tasks: TaskView[], deployId: string, at: number): { fresh: number; old: number } {
  let fresh = 0;
  let old = 0;
  for (const t of tasks) {
    if (t.taskId.startedAt > at) continue;
    if (t.doneAt !== undefined && t.doneAt < at) continue;
    if (t.cleanup && t.cleanup.timestamp < at) continue;
    if (t.taskId.deployId === deployId) fresh++;
    else old++;
  }
  return { fresh, old };
}

export function isLiveState(state: string): boolean {
  return ['TASK_LAUNCHED', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_CLEANING', 'TASK_KILLING'].includes(state);
}

export function Timeline({
  progress,
  deployId,
  startedAt,
  pending,
  resultState,
  deploy,
  tasks,
  history,
  oldDeployId,
  loadBalanced,
}: {
  progress: DeployProgress;
  deployId: string;
  startedAt: number;
  pending: boolean;
  resultState?: string;
  deploy?: Deploy;
  /** live tasks of the request (counts of the current step) */
  tasks?: TaskView[];
  /** live and ended tasks of the request (how many of each deploy ran at the end of each step) */
  history?: TaskView[];
  oldDeployId?: string;
  loadBalanced: boolean;
}) {
  const now = useNow(pending ? 1000 : 60_000);
  const timeline = buildTimeline(progress, startedAt, pending, resultState);
  const mode = deploy?.canaryDeploySettings?.acceptanceMode;
  return (
    <ol className="timeline" aria-label="Deploy timeline">
      {timeline.steps.map((s) => (
        <li key={s.step} className={`tl-step tl-${s.status}`} aria-current={s.status === 'current' ? 'step' : undefined}>
          <StepHeader s={s} total={progress.totalSteps} now={now} pending={pending} />
          {history && s.start !== undefined && !(s.step === progress.step && pending) && (
            <StepCounts counts={runningAt(history, deployId, s.end ?? now)} />
          )}
          {s.step === progress.step && pending && tasks && (
            <p className="tl-counts">
              <span>
                New tasks ({progress.targetActiveInstances} wanted by this step):{' '}
                <CountsText c={countTasks(tasks, deployId)} lb={loadBalanced} />
              </span>
              <span>
                Old tasks{oldDeployId ? ` (${oldDeployId})` : ''}: <CountsText c={countTasks(tasks, oldDeployId)} lb={loadBalanced} />
              </span>
            </p>
          )}
          <ol className="tl-phases">
            {s.phases.map((p) =>
              p.phase === 'LB_UPDATE' && !loadBalanced && p.start === undefined ? null : (
                <PhaseRow key={p.phase} p={p} stepStatus={s.status} now={now} pending={pending}>
                  {p.phase === 'ACCEPTANCE' && s.step === progress.step && (
                    <Acceptance progress={progress} waiting={pending && p.status === 'current'} mode={mode} />
                  )}
                </PhaseRow>
              ),
            )}
          </ol>
        </li>
      ))}
      {timeline.end && (
        <li className={`tl-step tl-end tl-${resultState === 'SUCCEEDED' ? 'done' : resultState === 'CANCELED' ? 'ended' : 'failed'}`}>
          <div className="tl-step-head">
            <h3>End</h3>
            <Badge state={resultState} />
            <span className="tl-when">
              <Time at={timeline.end.at} /> · {duration(timeline.end.at - startedAt)} in all
            </span>
          </div>
          <p className="tl-end-text">{timeline.end.reason}</p>
          {timeline.end.observed !== timeline.end.reason && <p className="muted">{timeline.end.observed}</p>}
        </li>
      )}
    </ol>
  );
}

function StepCounts({ counts }: { counts: { fresh: number; old: number } }) {
  return (
    <p className="tl-counts">
      <span className="num">
        At the end of the step: {counts.fresh} new task{counts.fresh === 1 ? '' : 's'}, {counts.old} old task{counts.old === 1 ? '' : 's'}{' '}
        running
      </span>
    </p>
  );
}

function CountsText({ c, lb }: { c: Counts; lb: boolean }) {
  return (
    <span className="num">
      {c.live} running, {c.healthy} healthy{lb ? `, ${c.inLb} in LB` : ''}
    </span>
  );
}

function StepHeader({ s, total, now, pending }: { s: StepSpan; total: number; now: number; pending: boolean }) {
  const end = s.end ?? (s.status === 'current' && pending ? now : undefined);
  return (
    <div className="tl-step-head">
      <h3>
        Step {s.step} of {total}
      </h3>
      <Badge
        state={
          s.status === 'done'
            ? 'SUCCEEDED'
            : s.status === 'current'
              ? 'WAITING'
              : s.status === 'failed'
                ? 'FAILED'
                : s.status === 'ended'
                  ? 'CANCELED'
                  : 'UPCOMING'
        }
        label={
          s.status === 'current'
            ? 'in progress'
            : s.status === 'ended'
              ? 'canceled'
              : s.status === 'upcoming' && !pending
                ? 'not run'
                : s.status
        }
      />
      <span className="tl-when">
        {s.start !== undefined ? (
          <>
            <Time at={s.start} /> → {s.end !== undefined ? <Time at={s.end} /> : '…'} ·{' '}
            {duration(end !== undefined ? end - s.start : undefined)}
          </>
        ) : (
          'not started'
        )}
      </span>
    </div>
  );
}

function PhaseRow({
  p,
  stepStatus,
  now,
  pending,
  children,
}: {
  p: PhaseSpan;
  stepStatus: StepSpan['status'];
  now: number;
  pending: boolean;
  children?: ReactNode;
}) {
  // Once the deploy has ended, what never ran says so, rather than "upcoming".
  const status =
    p.status === 'upcoming' && !pending
      ? 'not run'
      : p.status === 'upcoming' && stepStatus !== 'upcoming' && stepStatus !== 'current'
        ? 'skipped'
        : p.status;
  const end = p.end ?? (p.status === 'current' ? now : undefined);
  const decisions = p.decisions.filter((d) => d.phase !== 'END');
  return (
    <li className={`tl-phase tl-${status === 'not run' ? 'skipped' : status}`} aria-current={status === 'current' ? 'true' : undefined}>
      <div className="tl-phase-head">
        <span className="tl-dot" aria-hidden="true" />
        <span className="tl-phase-name">{PHASE_LABELS[p.phase]}</span>
        <span className="tl-phase-status">{status === 'current' ? 'now' : status}</span>
        <span className="tl-when num">
          {p.start !== undefined ? (
            <>
              <Time at={p.start} /> → {p.end !== undefined ? <Time at={p.end} /> : '…'}{' '}
              <span className="muted">({duration(end !== undefined ? end - p.start : undefined)})</span>
            </>
          ) : null}
        </span>
      </div>
      {p.lbUpdates.length > 0 && (
        <ul className="tl-lb">
          {p.lbUpdates.map((u) => (
            <li key={u.loadBalancerRequestId}>
              LB operation <code>{u.loadBalancerRequestId}</code>: +{u.add.length} new, −{u.remove.length} old · <Badge state={u.state} />
              {u.message ? ` ${u.message}` : ''}
            </li>
          ))}
        </ul>
      )}
      {children}
      {decisions.length > 0 && (
        <details className="tl-decisions" open={status === 'current' || status === 'failed'}>
          <summary>
            {decisions.length} decision{decisions.length === 1 ? '' : 's'}
          </summary>
          <DecisionList decisions={decisions} />
        </details>
      )}
    </li>
  );
}

function Acceptance({ progress, waiting, mode }: { progress: DeployProgress; waiting: boolean; mode: string | undefined }) {
  const results = Object.entries(progress.stepAcceptanceResults ?? {});
  return (
    <div className="tl-acceptance">
      {waiting && mode === 'MANUAL' && (
        <p className="callout" role="status">
          Waiting for approval: <strong>Advance</strong> to go on, <strong>Reject</strong> to fail this step.
        </p>
      )}
      {waiting && mode === 'TIMED' && progress.deadline !== undefined && (
        <p className="callout" role="status">
          Waiting until <Time at={progress.deadline} /> before the next step.
        </p>
      )}
      {results.length > 0 && (
        <ul className="tl-checks">
          {results.map(([name, state]) => (
            <li key={name}>
              <code>{name}</code> <Badge state={state} />
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function DecisionList({ decisions }: { decisions: Decision[] }) {
  return (
    <ul className="decisions">
      {decisions.map((d, i) => (
        <li key={i}>
          <Time at={d.at} /> <strong>{d.action}</strong> — {d.observed}
          {d.reason && d.reason !== d.observed ? <span className="muted"> ({d.reason})</span> : null}
        </li>
      ))}
    </ul>
  );
}

export function DecisionLog({ decisions }: { decisions: Decision[] }) {
  if (decisions.length === 0) return <p className="empty">No decisions yet.</p>;
  return (
    <div className="table-wrap">
      <table className="table decision-log">
        <caption className="sr-only">Decision log</caption>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Step</th>
            <th scope="col">Phase</th>
            <th scope="col">Seen</th>
            <th scope="col">Done</th>
            <th scope="col">Why</th>
          </tr>
        </thead>
        <tbody>
          {decisions.map((d, i) => (
            <tr key={i}>
              <td data-label="Time">
                <Time at={d.at} />
              </td>
              <td data-label="Step" className="num">
                {d.step}
              </td>
              <td data-label="Phase">{PHASE_LABELS[d.phase] ?? humanState(d.phase)}</td>
              <td data-label="Seen">{d.observed}</td>
              <td data-label="Done">{d.action}</td>
              <td data-label="Why">{d.reason}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function AcceptanceMessages({ messages }: { messages: string[] }) {
  if (messages.length === 0) return null;
  return (
    <ul className="acceptance-messages">
      {messages.map((m, i) => (
        <li key={i}>{m}</li>
      ))}
    </ul>
  );
}
