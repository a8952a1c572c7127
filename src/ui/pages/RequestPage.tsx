// One request: its state and actions, the pending deploy (progress, actions, live timeline),
// the active deploy, and its tasks.
import { client, isNotFound, requestTaskHistory } from '../api.ts';
import {
  ActionButton,
  Badge,
  CheckField,
  DefList,
  DeployProgressBar,
  formMessage,
  Loading,
  MessageField,
  NumberField,
  PageError,
  Time,
} from '../components.tsx';
import { useResource, useTitle } from '../hooks.ts';
import type { LiveEvent } from '../live.ts';
import { Link, navigate, paths } from '../router.tsx';
import { ResultBanner } from '../result-banner.tsx';
import { Timeline } from '../timeline.tsx';
import { TrafficPanel } from '../traffic.tsx';
import type { DeployHistoryView, RequestParent } from '../types.ts';
import { isJob, RunNowButton, RunsSection, ScheduleFacts } from './runs.tsx';
import { DeployActions, TaskTable } from './shared.tsx';

export function RequestPage({ requestId }: { requestId: string }) {
  useTitle(requestId);
  const touches = (e: LiveEvent) => e.kind !== 'resync' && e.requestId === requestId;
  const parent = useResource(`request:${requestId}`, () => client.getRequest(requestId), touches);
  const tasks = useResource(`tasks:${requestId}`, () => client.requestTasks(requestId), touches);
  const ended = useResource(
    `ended:${requestId}`,
    () => requestTaskHistory(requestId),
    (e) => touches(e) && e.kind === 'task',
  );
  const history = useResource(`history:${requestId}`, () => client.deployHistory(requestId), touches);

  if (parent.error !== undefined && (!parent.data || isNotFound(parent.error))) {
    return (
      <>
        <h1 tabIndex={-1}>{requestId}</h1>
        <PageError error={parent.error} what={`Request ${requestId}`} />
      </>
    );
  }
  if (!parent.data) {
    return (
      <>
        <h1 tabIndex={-1}>{requestId}</h1>
        <Loading />
      </>
    );
  }
  const r = parent.data;
  const pending = r.pendingDeployState;
  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>
          {r.request.id} <Badge state={r.state} />
        </h1>
        <nav className="subnav" aria-label="Request pages">
          <Link href={paths.history(requestId)}>Deploy history</Link>
        </nav>
      </div>
      {parent.error !== undefined && <PageError error={parent.error} what="Latest state" />}
      <ResultBanner r={r} history={history.data} tasks={tasks.data} />
      <DefList
        items={[
          ['Type', r.request.requestType.toLowerCase()],
          [
            'Instances',
            r.instanceCounts ? (
              <span className="num">
                {r.instanceCounts.desired} wanted: {r.instanceCounts.healthy} healthy, {r.instanceCounts.total} running
                {r.instanceCounts.total > r.instanceCounts.desired
                  ? ` (${r.instanceCounts.total - r.instanceCounts.desired} surge: a deploy's new tasks beside the old)`
                  : ''}
              </span>
            ) : (
              r.request.instances
            ),
          ],
          ['Load balanced', r.request.loadBalanced ? 'yes' : 'no'],
          ['Active deploy', r.activeDeploy ? <Link href={paths.deploy(requestId, r.activeDeploy.id)}>{r.activeDeploy.id}</Link> : 'none'],
          ...(r.bounce ? ([['Bouncing since', <Time at={r.bounce.startedAt} />]] as [string, React.ReactNode][]) : []),
          ...(r.request.owners?.length ? ([['Owners', r.request.owners.join(', ')]] as [string, React.ReactNode][]) : []),
        ]}
      />
      <ScheduleFacts r={r} />
      <RequestActions r={r} history={history.data} />
      <CrashLoop r={r} />
      {isJob(r) && <RunsSection r={r} tasks={[...(tasks.data ?? []), ...(ended.data ?? [])]} />}

      <section aria-labelledby="pending-h">
        <h2 id="pending-h">Pending deploy</h2>
        {r.pendingDeploy && pending ? (
          <div className="card">
            <div className="card-head">
              <h3>
                <Link href={paths.deploy(requestId, r.pendingDeploy.id)}>{r.pendingDeploy.id}</Link>
              </h3>
              <span className="muted">
                started <Time at={pending.deployMarker.timestamp} />
                {pending.deployMarker.message ? ` · ${pending.deployMarker.message}` : ''}
              </span>
            </div>
            <DeployProgressBar progress={pending.deployProgress} />
            {r.request.loadBalanced && <TrafficPanel requestId={requestId} deployId={r.pendingDeploy.id} />}
            <DeployActions
              requestId={requestId}
              deployId={r.pendingDeploy.id}
              progress={pending.deployProgress}
              instances={pending.updatedRequest?.instances ?? r.request.instances}
              deploy={r.pendingDeploy}
            />
            <Timeline
              progress={pending.deployProgress}
              deployId={r.pendingDeploy.id}
              startedAt={pending.deployMarker.timestamp}
              pending
              deploy={r.pendingDeploy}
              tasks={tasks.data ?? []}
              history={[...(tasks.data ?? []), ...(ended.data ?? [])]}
              {...(r.activeDeploy ? { oldDeployId: r.activeDeploy.id } : {})}
              loadBalanced={r.request.loadBalanced}
            />
          </div>
        ) : (
          <p className="empty">
            No deploy in progress. <Link href={paths.newDeploy(requestId)}>Start a new deploy</Link>.
          </p>
        )}
      </section>

      <section aria-labelledby="active-h">
        <h2 id="active-h">Active deploy</h2>
        {r.activeDeploy ? (
          <DefList
            items={[
              ['Deploy', <Link href={paths.deploy(requestId, r.activeDeploy.id)}>{r.activeDeploy.id}</Link>],
              ['Created', <Time at={r.activeDeploy.timestamp} date />],
              ['Command', <code className="wrap">{r.activeDeploy.command ?? '—'}</code>],
              ...(r.activeDeploy.healthcheck
                ? ([['Health check', <code>{r.activeDeploy.healthcheck.uri}</code>]] as [string, React.ReactNode][])
                : []),
              ...(r.activeDeploy.serviceBasePath
                ? ([['Base path', <code>{r.activeDeploy.serviceBasePath}</code>]] as [string, React.ReactNode][])
                : []),
            ]}
          />
        ) : (
          <p className="empty">No active deploy yet.</p>
        )}
      </section>

      <section aria-labelledby="tasks-h">
        <h2 id="tasks-h">Tasks</h2>
        {tasks.error !== undefined && !tasks.data && <PageError error={tasks.error} what="Tasks" />}
        {tasks.data ? (
          <TaskTable tasks={tasks.data} caption="Running tasks" empty="No running tasks." />
        ) : (
          tasks.error === undefined && <Loading />
        )}
        {ended.data && ended.data.length > 0 && (
          <details className="ended-tasks">
            <summary>Ended tasks ({ended.data.length})</summary>
            <TaskTable tasks={ended.data.slice(0, 50)} caption="Ended tasks" empty="" />
          </details>
        )}
      </section>
    </>
  );
}

function CrashLoop({ r }: { r: RequestParent }) {
  const backoff = (r as RequestParent & { crashLoopBackoff?: Record<string, { failures: number; until: number }> }).crashLoopBackoff;
  if (!backoff) return null;
  return (
    <p className="callout callout-warn" role="status">
      Crash loop backoff:{' '}
      {Object.entries(backoff)
        .map(([n, b]) => `#${n} failed ${b.failures}× (next start ${new Date(b.until).toLocaleTimeString()})`)
        .join('; ')}
    </p>
  );
}

/** What a plain rollback goes back to: the newest deploy that succeeded before the active one. */
export function rollbackTarget(r: RequestParent, history: DeployHistoryView[] | undefined): string | undefined {
  const active = r.activeDeploy?.id;
  if (!active || !history) return undefined;
  const sorted = [...history].sort((a, b) => b.deployMarker.timestamp - a.deployMarker.timestamp);
  const at = sorted.findIndex((h) => h.deployMarker.deployId === active);
  return sorted.slice(at + 1).find((h) => h.deployResult?.deployState === 'SUCCEEDED' && h.deployMarker.deployId !== active)?.deployMarker
    .deployId;
}

function RequestActions({ r, history }: { r: RequestParent; history: DeployHistoryView[] | undefined }) {
  const id = r.request.id;
  const paused = r.state === 'PAUSED';
  const target = rollbackTarget(r, history);
  return (
    <div className="actions toolbar" role="group" aria-label="Request actions">
      <RunNowButton r={r} />
      <Link className="btn btn-primary" href={paths.newDeploy(id)}>
        New deploy
      </Link>
      <ActionButton
        label="Scale"
        title={`Scale ${id}`}
        fields={
          <>
            <NumberField name="instances" label="Instances" defaultValue={r.request.instances} />
            <MessageField />
          </>
        }
        onConfirm={(f) => client.scale(id, Number(f.get('instances')), formMessage(f))}
      />
      {paused ? (
        <ActionButton
          label="Unpause"
          title={`Unpause ${id}?`}
          description={<p>Starts its tasks again.</p>}
          fields={<MessageField />}
          onConfirm={(f) => client.unpause(id, opt({ message: formMessage(f) }))}
        />
      ) : (
        <ActionButton
          label="Pause"
          title={`Pause ${id}?`}
          description={<p>Stops scheduling new tasks; a pending deploy fails.</p>}
          fields={
            <>
              <CheckField name="killTasks" label="Also stop its running tasks" />
              <MessageField />
            </>
          }
          onConfirm={(f) => client.pause(id, opt({ message: formMessage(f), killTasks: f.get('killTasks') === 'on' }))}
        />
      )}
      <ActionButton
        label="Bounce"
        title={`Bounce ${id}?`}
        description={<p>Replaces every task; new tasks start (and become healthy) before old ones stop.</p>}
        fields={
          <>
            <CheckField name="incremental" label="Incremental (one instance at a time)" />
            <MessageField />
          </>
        }
        onConfirm={(f) => client.bounce(id, opt({ message: formMessage(f), incremental: f.get('incremental') === 'on' }))}
      />
      <ActionButton
        label={target ? `Roll back to ${target}` : 'Roll back'}
        disabled={!target || r.pendingDeploy !== undefined}
        title={`Roll ${id} back to ${target ?? '?'}?`}
        description={
          <p>
            Deploys {target}'s spec again as a new deploy, atomically (no canary); {r.activeDeploy?.id} keeps serving until it is healthy.
            Any earlier deploy can be chosen in the <Link href={paths.history(id)}>deploy history</Link>.
          </p>
        }
        confirmLabel={`Roll back to ${target ?? '?'}`}
        fields={<MessageField />}
        onConfirm={(f) => client.rollback(id, opt({ message: formMessage(f), deployId: target }))}
      />
      <ActionButton
        label="Delete"
        danger
        title={`Delete ${id}?`}
        description={<p>Stops all its tasks (leaving the load balancer first) and removes the request.</p>}
        confirmLabel="Delete request"
        fields={<MessageField />}
        onConfirm={(f) => client.deleteRequest(id, opt({ message: formMessage(f) }))}
        onDone={() => navigate(paths.requests())}
      />
    </div>
  );
}

/** Drop undefined fields (exactOptionalPropertyTypes-friendly bodies). */
function opt<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}
