// A run-to-completion request's runs: schedule and next run, the queue, and each run's state,
// exit code, duration and a link to its logs; plus the Run now action.
import { useId } from 'react';
import { client } from '../api.ts';
import { ActionButton, Badge, DefList, formMessage, MessageField, Time } from '../components.tsx';
import { Link, paths } from '../router.tsx';
import type { RequestParent, TaskView } from '../types.ts';

const JOB_TYPES = new Set(['SCHEDULED', 'ON_DEMAND', 'RUN_ONCE']);

export function isJob(r: RequestParent): boolean {
  return JOB_TYPES.has(r.request.requestType);
}

export function ScheduleFacts({ r }: { r: RequestParent }) {
  if (r.request.requestType !== 'SCHEDULED') return null;
  const schedule = r.request.quartzSchedule ?? r.request.schedule;
  return (
    <DefList
      items={[
        ['Schedule', <code>{`${schedule ?? '—'}${r.request.scheduleTimeZone ? ` (${r.request.scheduleTimeZone})` : ''}`}</code>],
        ['Next run', r.nextRunAt !== undefined ? <Time at={r.nextRunAt} date /> : 'none'],
        ...(r.skippedRuns ? ([['Skipped runs', `${r.skippedRuns.count} (a run was still going)`]] as [string, React.ReactNode][]) : []),
      ]}
    />
  );
}

function duration(t: TaskView): string {
  if (t.runningAt === undefined) return '—';
  if (t.doneAt === undefined) return 'running';
  return `${((t.doneAt - t.runningAt) / 1000).toFixed(1)} s`;
}

export function RunsSection({ r, tasks }: { r: RequestParent; tasks: TaskView[] }) {
  const runs = tasks.filter((t) => t.run).sort((a, b) => b.taskId.startedAt - a.taskId.startedAt);
  const queued = r.pendingRequests ?? [];
  return (
    <section aria-labelledby="runs-h">
      <h2 id="runs-h">Runs</h2>
      {queued.length > 0 && (
        <p className="muted" role="status">
          Waiting to run: {queued.map((q) => q.runId).join(', ')}
        </p>
      )}
      {runs.length === 0 ? (
        <p className="empty">No runs yet.</p>
      ) : (
        <div className="table-wrap">
          <table className="runs">
            <caption className="sr-only">Runs</caption>
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">State</th>
                <th scope="col">Exit code</th>
                <th scope="col">Duration</th>
                <th scope="col">Started</th>
                <th scope="col">Logs</th>
              </tr>
            </thead>
            <tbody>
              {runs.slice(0, 50).map((t) => (
                <tr key={t.taskId.id}>
                  <td>
                    {t.run?.runId ?? t.run?.trigger.toLowerCase()}
                    {t.run && t.run.retry > 0 ? <span className="muted"> (retry {t.run.retry})</span> : null}
                  </td>
                  <td>
                    <Badge state={t.state} />
                  </td>
                  <td className="num">{t.exitCode ?? '—'}</td>
                  <td className="num">{duration(t)}</td>
                  <td>
                    <Time at={t.runningAt ?? t.taskId.startedAt} />
                  </td>
                  <td>
                    <Link href={paths.task(t.taskId.id)}>logs</Link>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function ArgsField() {
  const id = useId();
  return (
    <p className="field">
      <label htmlFor={id}>Arguments, one per line (optional)</label>
      <textarea id={id} name="args" rows={3} autoComplete="off" />
    </p>
  );
}

export function RunNowButton({ r }: { r: RequestParent }) {
  const type = r.request.requestType;
  if (type !== 'ON_DEMAND' && type !== 'SCHEDULED') return null;
  const id = r.request.id;
  return (
    <ActionButton
      label="Run now"
      primary
      title={`Run ${id} now?`}
      description={
        <p>
          Starts a run of the active deploy{type === 'ON_DEMAND' ? `; beyond ${r.request.instances} at once, runs wait in the queue` : ''}.
        </p>
      }
      disabled={!r.activeDeploy || r.state !== 'ACTIVE'}
      fields={
        <>
          <ArgsField />
          <MessageField />
        </>
      }
      onConfirm={(f) => {
        const args = String(f.get('args') ?? '')
          .split('\n')
          .map((a) => a.trim())
          .filter(Boolean);
        const message = formMessage(f);
        return client.runNow(id, { ...(args.length ? { commandLineArgs: args } : {}), ...(message ? { message } : {}) });
      }}
    />
  );
}
