// Pieces shared by the request and deploy pages: deploy actions and task tables.
import { useEffect, useState } from 'react';
import { client } from '../api.ts';
import { ActionButton, Badge, Empty, formMessage, MessageField, NumberField, Time } from '../components.tsx';
import { duration, humanState } from '../format.ts';
import { useNow } from '../hooks.ts';
import { Link, paths } from '../router.tsx';
import type { Deploy } from '../../core/model.ts';
import type { DeployHistoryView, DeployProgress, TaskView } from '../types.ts';

const ACTION_WORDS = { advance: 'advanced', reject: 'rejected', cancel: 'cancelled', update: 'updated the target' } as const;

/** Who advanced, rejected, updated or cancelled a deploy (from the server's audit log). */
export function DeployActionsTaken({ actions }: { actions: DeployHistoryView['actions'] }) {
  if (!actions || actions.length === 0) return <span className="muted">none</span>;
  return (
    <ul className="actions-taken">
      {actions.map((a, i) => (
        <li key={i}>
          {ACTION_WORDS[a.action]} by <strong>{a.user ?? 'unknown'}</strong> <Time at={a.at} />
        </li>
      ))}
    </ul>
  );
}

/** Whether the deploy waits for a person now: the API takes an advance only then (else 409). */
export function waitsForApproval(
  progress: DeployProgress,
  deploy: Pick<Deploy, 'canaryDeploySettings' | 'acceptanceChecks'> | undefined,
): boolean {
  const mode = deploy?.canaryDeploySettings?.acceptanceMode;
  const manual = mode === 'MANUAL' || (mode === 'CHECKS' && (deploy?.acceptanceChecks ?? []).some((c) => c.type === 'manual'));
  return progress.phase === 'ACCEPTANCE' && manual;
}

/**
 * Advance, reject, update target, cancel: for the pending deploy, each only where the phase
 * takes it (Advance at a manual gate; Update target on a canary with steps left).
 */
export function DeployActions({
  requestId,
  deployId,
  progress,
  instances,
  deploy,
}: {
  requestId: string;
  deployId: string;
  progress: DeployProgress;
  instances: number;
  deploy?: Pick<Deploy, 'canaryDeploySettings' | 'acceptanceChecks'> | undefined;
}) {
  const canAdvance = waitsForApproval(progress, deploy);
  const canUpdate = progress.totalSteps > 1 && progress.targetActiveInstances < instances;
  return (
    <div className="actions" role="group" aria-label={`Actions on deploy ${deployId}`}>
      {canAdvance && (
        <ActionButton
          label="Advance"
          title={`Advance deploy ${deployId}?`}
          description={
            <p>
              Approves step {progress.step} of {progress.totalSteps} so the deploy goes on.
            </p>
          }
          fields={<MessageField />}
          onConfirm={(f) => client.advanceDeploy(requestId, deployId, formMessage(f))}
        />
      )}
      <ActionButton
        label="Reject"
        danger
        title={`Reject step ${progress.step} of deploy ${deployId}?`}
        description={<p>Fails the current step: the deploy ends FAILED and the old deploy is refilled to full capacity.</p>}
        confirmLabel={`Reject deploy ${deployId}`}
        dismissLabel="Keep deploying"
        fields={<MessageField />}
        onConfirm={(f) => client.rejectDeploy(requestId, deployId, formMessage(f))}
      />
      {canUpdate && (
        <ActionButton
          label="Update target"
          title={`Update the target of deploy ${deployId}`}
          description={
            <p>
              Jump to a number of new instances (now {progress.targetActiveInstances} of {instances}).
            </p>
          }
          fields={<NumberField name="target" label="Target active instances" defaultValue={instances} min={1} />}
          onConfirm={(f) => client.updateDeploy(requestId, deployId, Number(f.get('target')))}
        />
      )}
      <ActionButton
        label="Cancel deploy"
        danger
        title={`Cancel deploy ${deployId}?`}
        description={<p>The deploy ends CANCELED; the active deploy keeps (or gets back) full capacity before new tasks stop.</p>}
        confirmLabel={`Cancel deploy ${deployId}`}
        dismissLabel="Keep deploying"
        onConfirm={() => client.cancelDeploy(requestId, deployId)}
      />
    </div>
  );
}

/** "4 s ago": how old a health result is, so a stale one does not pass for current. */
export function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

export function lastHealth(t: TaskView) {
  const results = t.healthcheckResults ?? t.health.results ?? [];
  return results[results.length - 1];
}

export function lbText(t: TaskView): string {
  const lb = t.loadBalancerState ?? t.lb;
  if (lb.remove) return lb.remove.state === 'SUCCESS' ? 'removed' : `removing (${lb.remove.state.toLowerCase()})`;
  if (lb.add) return lb.add.state === 'SUCCESS' ? 'in LB' : `adding (${lb.add.state.toLowerCase()})`;
  return '—';
}

export function TaskTable({
  tasks,
  empty,
  showDeploy = true,
  caption,
}: {
  tasks: TaskView[];
  empty: string;
  showDeploy?: boolean;
  caption: string;
}) {
  const now = useNow(5000);
  if (tasks.length === 0) return <Empty>{empty}</Empty>;
  const sorted = [...tasks].sort((a, b) => a.taskId.instanceNo - b.taskId.instanceNo || b.taskId.startedAt - a.taskId.startedAt);
  return (
    <div className="table-wrap">
      <table className="table tasks-table">
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">Task</th>
            <th scope="col">#</th>
            {showDeploy && <th scope="col">Deploy</th>}
            <th scope="col">State</th>
            <th scope="col">Health</th>
            <th scope="col">Last check</th>
            <th scope="col">LB</th>
            <th scope="col">Started</th>
          </tr>
        </thead>
        <tbody>
          {sorted.map((t) => {
            const last = lastHealth(t);
            return (
              <tr key={t.taskId.id}>
                <th scope="row" data-label="Task" className="task-id">
                  <Link href={paths.task(t.taskId.id)}>{t.taskId.id}</Link>
                </th>
                <td data-label="Instance" className="num">
                  {t.taskId.instanceNo}
                </td>
                {showDeploy && <td data-label="Deploy">{t.taskId.deployId}</td>}
                <td data-label="State">
                  <Badge state={t.state} />
                  {t.cleanup && <span className="muted small"> {humanState(t.cleanup.reason)}</span>}
                  {t.waitingReason && <span className="warn-text small"> {t.waitingReason}</span>}
                </td>
                <td data-label="Health">
                  <Badge state={t.health.state} />
                  {t.health.message && <span className="muted small"> {t.health.message}</span>}
                </td>
                <td data-label="Last check" className="num">
                  {last ? (
                    <span title={last.errorMessage ?? last.responseBody ?? ''}>
                      {last.statusCode ?? (last.startup ? 'starting' : 'error')} · {duration(last.durationMillis)} ·{' '}
                      {(t.healthcheckResults ?? t.health.results).length} checks ·{' '}
                      <span className="muted">{ago(now - last.timestamp)}</span>
                    </span>
                  ) : (
                    <span className="muted">none</span>
                  )}
                </td>
                <td data-label="LB">{lbText(t)}</td>
                <td data-label="Started">
                  <Time at={t.taskId.startedAt} />
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/** The last lines of a failed task's stderr, shown where the failure is: why, in its own words. */
export function StderrTail({ taskId, lines = 8 }: { taskId: string; lines?: number }) {
  const [text, setText] = useState<string[]>();
  useEffect(() => {
    let alive = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    // A few tries: the failure can be shown a moment before the task's last output is readable.
    const load = (tries: number) =>
      client.tailLogs(taskId, 'stderr', 4096).then(
        (chunk) => {
          if (!alive) return;
          const found = chunk.data
            .split('\n')
            .filter((l) => l.trim() !== '')
            .slice(-lines);
          setText(found);
          if (found.length === 0 && tries > 1) timer = setTimeout(() => void load(tries - 1), 1000);
        },
        () => {
          if (!alive) return;
          setText([]);
          if (tries > 1) timer = setTimeout(() => void load(tries - 1), 1000);
        },
      );
    void load(5);
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, [taskId, lines]);
  if (!text || text.length === 0) return null;
  return (
    <figure className="stderr-tail">
      <figcaption className="muted small">
        stderr, last {text.length} line{text.length === 1 ? '' : 's'} (<Link href={paths.task(taskId)}>whole log</Link>)
      </figcaption>
      <pre className="code">{text.join('\n')}</pre>
    </figure>
  );
}
