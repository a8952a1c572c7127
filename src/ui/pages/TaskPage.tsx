// One task: what it is, its state history, health-check results, LB operations and a live
// tail of its stdout and stderr.
import { useEffect, useId, useRef, useState } from 'react';
import { client } from '../api.ts';
import { ActionButton, Badge, CheckField, DefList, ErrorBox, formMessage, Loading, MessageField, PageError, Time } from '../components.tsx';
import { age, duration, humanState } from '../format.ts';
import { useNow, useResource, useTitle } from '../hooks.ts';
import { live } from '../live.ts';
import { Link, paths } from '../router.tsx';
import { isLiveState } from '../timeline.tsx';
import type { TaskView } from '../types.ts';

/** When the latest check ended and how long ago (kept current), and the failures in a row. */
function LastCheck({ t, running }: { t: TaskView; running: boolean }) {
  const now = useNow(1000);
  const h = t.health;
  if (h.lastCheckAt === undefined) return <>—</>;
  const inARow = h.consecutiveFailures ?? 0;
  return (
    <span className="last-check">
      <Time at={h.lastCheckAt} /> <span data-testid="check-age">({running ? age(now - h.lastCheckAt) : 'task ended'})</span>
      {' · '}
      <span className={inARow > 0 ? 'failing' : undefined} data-testid="check-failures">
        {inARow} failed in a row
      </span>
      {h.checks !== undefined ? ` · ${h.checks} checks, ${h.failedChecks ?? 0} failed` : ''}
    </span>
  );
}

export function TaskPage({ taskId }: { taskId: string }) {
  useTitle(taskId);
  const task = useResource(
    `task:${taskId}`,
    () => client.getTask(taskId),
    (e) => e.kind === 'task' && e.taskId === taskId,
  );
  if (!task.data) {
    return (
      <>
        <h1 tabIndex={-1} className="task-title">
          Task {taskId}
        </h1>
        {task.error !== undefined ? <PageError error={task.error} what={`Task ${taskId}`} /> : <Loading />}
      </>
    );
  }
  const t = task.data;
  const { requestId, deployId } = t.taskId;
  const results = [...(t.healthcheckResults ?? t.health.results)].reverse();
  const lb = t.loadBalancerState ?? t.lb;
  const running = isLiveState(t.state);
  return (
    <>
      <nav aria-label="Breadcrumb" className="crumbs">
        <Link href={paths.requests()}>Requests</Link> / <Link href={paths.request(requestId)}>{requestId}</Link> /{' '}
        <Link href={paths.deploy(requestId, deployId)}>{deployId}</Link> /
      </nav>
      <div className="page-head">
        <h1 tabIndex={-1} className="task-title">
          Task #{t.taskId.instanceNo} <Badge state={t.state} />
        </h1>
        <div className="actions">
          <ActionButton
            label="Kill task"
            danger
            disabled={!running || t.state === 'TASK_KILLING'}
            title={`Kill task #${t.taskId.instanceNo}?`}
            description={<p>The scheduler replaces it to keep the request at its instance count.</p>}
            fields={
              <>
                <CheckField name="wait" label="Wait for its replacement to be healthy first" />
                <MessageField />
              </>
            }
            onConfirm={(f) =>
              client.killTask(taskId, {
                ...(formMessage(f) ? { message: formMessage(f) } : {}),
                waitForReplacementTask: f.get('wait') === 'on',
              })
            }
          />
        </div>
      </div>
      {task.error !== undefined && <PageError error={task.error} what="Latest state" />}
      <DefList
        items={[
          ['Id', <code className="wrap">{t.taskId.id}</code>],
          ['Request', <Link href={paths.request(requestId)}>{requestId}</Link>],
          ['Deploy', <Link href={paths.deploy(requestId, deployId)}>{deployId}</Link>],
          [
            'Health',
            <>
              <Badge state={t.health.state} />
              {t.health.message ? ` ${t.health.message}` : ''}
            </>,
          ],
          ['Last check', <LastCheck t={t} running={running} />],
          ['Ports', t.ports.length ? t.ports.join(', ') : '—'],
          ['Pid', t.pid ?? '—'],
          ['Process group', t.pgid ?? '—'],
          ['Started', <Time at={t.taskId.startedAt} date />],
          ...(t.doneAt
            ? ([
                [
                  'Ended',
                  <>
                    <Time at={t.doneAt} date />{' '}
                    {t.exitCode !== undefined && t.exitCode !== null ? `(exit ${t.exitCode})` : t.signal ? `(${t.signal})` : ''}
                  </>,
                ],
              ] as [string, React.ReactNode][])
            : []),
          ...(t.cleanup
            ? ([['Cleanup', `${humanState(t.cleanup.reason)}${t.cleanup.message ? ` — ${t.cleanup.message}` : ''}`]] as [string, string][])
            : []),
          ...(t.waitingReason ? ([['Waiting', t.waitingReason]] as [string, string][]) : []),
        ]}
      />

      <section aria-labelledby="logs-h">
        <h2 id="logs-h">Logs</h2>
        <LogTabs taskId={taskId} running={running} />
      </section>

      <div className="two-col">
        <section aria-labelledby="updates-h">
          <h2 id="updates-h">State history</h2>
          <StateHistory t={t} />
        </section>
        <section aria-labelledby="lb-h">
          <h2 id="lb-h">Load balancer</h2>
          {!lb.add && !lb.remove ? (
            <p className="empty">Never in a load balancer.</p>
          ) : (
            <DefList
              items={[
                ...(lb.add
                  ? ([
                      [
                        'Add',
                        <>
                          <Badge state={lb.add.state} /> <code>{lb.add.operationId}</code> at <Time at={lb.add.timestamp} />
                        </>,
                      ],
                    ] as [string, React.ReactNode][])
                  : []),
                ...(lb.remove
                  ? ([
                      [
                        'Remove',
                        <>
                          <Badge state={lb.remove.state} /> <code>{lb.remove.operationId}</code> at <Time at={lb.remove.timestamp} />
                        </>,
                      ],
                    ] as [string, React.ReactNode][])
                  : []),
              ]}
            />
          )}
        </section>
      </div>

      <section aria-labelledby="health-h">
        <h2 id="health-h">Health checks ({results.length})</h2>
        {results.length === 0 ? (
          <p className="empty">No health-check results.</p>
        ) : (
          <div className="table-wrap scroll-y">
            <table className="table health-table">
              <caption className="sr-only">Health-check results, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Status</th>
                  <th scope="col">Took</th>
                  <th scope="col">Answer</th>
                </tr>
              </thead>
              <tbody>
                {results.slice(0, 100).map((h, i) => (
                  <tr key={`${h.timestamp}-${i}`}>
                    <td data-label="Time">
                      <Time at={h.timestamp} />
                    </td>
                    <td data-label="Status" className="num">
                      {h.statusCode !== undefined ? (
                        <Badge state={h.statusCode >= 200 && h.statusCode < 300 ? 'SUCCESS' : 'FAILED'} label={String(h.statusCode)} />
                      ) : (
                        <Badge state={h.startup ? 'PENDING' : 'FAILED'} label={h.startup ? 'starting' : 'error'} />
                      )}
                    </td>
                    <td data-label="Took" className="num">
                      {duration(h.durationMillis)}
                    </td>
                    <td data-label="Answer" className="small">
                      {h.errorMessage ?? h.responseBody?.trim() ?? ''}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}

function StateHistory({ t }: { t: TaskView }) {
  const updates = t.taskUpdates ?? [];
  if (updates.length === 0) return <p className="empty">No state changes recorded.</p>;
  return (
    <ol className="state-history">
      {updates.map((u, i) => (
        <li key={i}>
          <Time at={u.timestamp} /> <Badge state={u.taskState} />
          {u.statusMessage ? <span className="muted"> {u.statusMessage}</span> : null}
        </li>
      ))}
    </ol>
  );
}

function LogTabs({ taskId, running }: { taskId: string; running: boolean }) {
  const [tab, setTab] = useState<'stdout' | 'stderr'>('stdout');
  const id = useId();
  const tabs = ['stdout', 'stderr'] as const;
  const onKey = (e: React.KeyboardEvent) => {
    if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
    const next = tab === 'stdout' ? 'stderr' : 'stdout';
    setTab(next);
    document.getElementById(`${id}-${next}`)?.focus();
  };
  return (
    <div className="logs">
      <div role="tablist" aria-label="Log files" className="tabs" onKeyDown={onKey}>
        {tabs.map((name) => (
          <button
            key={name}
            id={`${id}-${name}`}
            role="tab"
            type="button"
            aria-selected={tab === name}
            aria-controls={`${id}-${name}-panel`}
            tabIndex={tab === name ? 0 : -1}
            onClick={() => setTab(name)}
          >
            {name}
          </button>
        ))}
      </div>
      {tabs.map((name) => (
        <div key={name} id={`${id}-${name}-panel`} role="tabpanel" aria-labelledby={`${id}-${name}`} hidden={tab !== name}>
          <LogTail taskId={taskId} path={name} follow={running} />
        </div>
      ))}
    </div>
  );
}

/** Keep at most this much of a log in the page. */
const MAX_CHARS = 256 * 1024;
/**
 * Log writes produce no events, so while the task page is open the tail reads from its last
 * offset once a second (a bounded poll of one small request, stopped when the page closes or
 * the task ended and its log is read to the end), and at once on every event of this task.
 */
const TAIL_INTERVAL_MS = 1000;

function LogTail({ taskId, path, follow }: { taskId: string; path: 'stdout' | 'stderr'; follow: boolean }) {
  const [text, setText] = useState('');
  const [error, setError] = useState<unknown>();
  const [loaded, setLoaded] = useState(false);
  const pre = useRef<HTMLPreElement>(null);
  const stick = useRef(true);
  const followRef = useRef(follow);
  followRef.current = follow;

  useEffect(() => {
    let offset = 0;
    let stopped = false;
    let reading = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setText('');
    setLoaded(false);
    const read = async () => {
      if (reading || stopped) return;
      reading = true;
      clearTimeout(timer);
      try {
        for (let i = 0; i < 16 && !stopped; i++) {
          const chunk = await client.readLogs(taskId, path, offset, 64 * 1024);
          if (stopped) return;
          setError(undefined);
          if (chunk.nextOffset < offset) offset = 0; // the file was truncated
          if (chunk.data) setText((t) => (t + chunk.data).slice(-MAX_CHARS));
          const moved = chunk.nextOffset !== offset;
          offset = chunk.nextOffset;
          if (!moved || chunk.data.length < 64 * 1024) break;
        }
        setLoaded(true);
      } catch (err) {
        if (!stopped) setError(err);
      } finally {
        reading = false;
        if (!stopped && followRef.current) timer = setTimeout(() => void read(), TAIL_INTERVAL_MS);
      }
    };
    void read();
    const unsubscribe = live.subscribe((e) => {
      if ((e.kind === 'task' && e.taskId === taskId) || e.kind === 'resync') void read();
    });
    return () => {
      stopped = true;
      clearTimeout(timer);
      unsubscribe();
    };
  }, [taskId, path]);

  useEffect(() => {
    const el = pre.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [text]);

  return (
    <>
      {error !== undefined && <ErrorBox error={error} what={`Reading ${path}`} />}
      <pre
        ref={pre}
        className="log"
        tabIndex={0}
        aria-label={`${path} of the task`}
        aria-busy={!loaded}
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {text || (loaded ? <span className="muted">(empty)</span> : '')}
      </pre>
      <p className="log-status muted small">{follow ? 'Following new lines.' : 'Task ended; log complete.'}</p>
    </>
  );
}
