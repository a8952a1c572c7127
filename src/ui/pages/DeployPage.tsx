// One deploy (pending or past): result and failures, progress and actions while pending, the
// timeline, the decision log, its tasks and its spec.
import { client, requestTaskHistory } from '../api.ts';
import { Badge, DefList, DeployProgressBar, Loading, PageError, Time } from '../components.tsx';
import { duration, reasonText } from '../format.ts';
import { useResource, useTitle } from '../hooks.ts';
import type { LiveEvent } from '../live.ts';
import { Link, paths } from '../router.tsx';
import { AcceptanceMessages, DecisionLog, Timeline } from '../timeline.tsx';
import { TrafficPanel } from '../traffic.tsx';
import { DeployActions, DeployActionsTaken, StderrTail, TaskTable } from './shared.tsx';

export function DeployPage({ requestId, deployId }: { requestId: string; deployId: string }) {
  useTitle(`${requestId} ${deployId}`);
  const touches = (e: LiveEvent) => e.kind !== 'resync' && e.requestId === requestId;
  const entry = useResource(`deploy:${requestId}:${deployId}`, () => client.deployHistoryEntry(requestId, deployId), touches);
  const parent = useResource(`request:${requestId}`, () => client.getRequest(requestId), touches);
  const tasks = useResource(`tasks:${requestId}`, () => client.requestTasks(requestId), touches);
  const ended = useResource(
    `ended:${requestId}`,
    () => requestTaskHistory(requestId),
    (e) => touches(e) && e.kind === 'task',
  );

  const crumbs = (
    <nav aria-label="Breadcrumb" className="crumbs">
      <Link href={paths.requests()}>Requests</Link> / <Link href={paths.request(requestId)}>{requestId}</Link> /{' '}
      <Link href={paths.history(requestId)}>deploys</Link> /
    </nav>
  );
  if (!entry.data) {
    return (
      <>
        {crumbs}
        <h1 tabIndex={-1}>Deploy {deployId}</h1>
        {entry.error !== undefined ? <PageError error={entry.error} what={`Deploy ${deployId}`} /> : <Loading />}
      </>
    );
  }
  const e = entry.data;
  const pending = e.deployState === 'WAITING';
  const result = e.deployResult;
  const progress = e.deployProgress;
  const r = parent.data;
  const mine = [...(tasks.data ?? []), ...(ended.data ?? [])].filter((t) => t.taskId.deployId === deployId);
  const failedIds = new Set([
    ...(progress?.failedDeployTasks ?? []).map((t) => t.id),
    ...(result?.deployFailures ?? []).map((f) => (f.taskId ? f.taskId.id : '')),
  ]);
  const failedTasks = mine.filter((t) => failedIds.has(t.taskId.id));
  const oldDeployId = r?.activeDeploy && r.activeDeploy.id !== deployId ? r.activeDeploy.id : undefined;
  return (
    <>
      {crumbs}
      <div className="page-head">
        <h1 tabIndex={-1}>
          Deploy {deployId} <Badge state={e.deployState} label={pending ? 'in progress' : undefined} />
        </h1>
      </div>
      {entry.error !== undefined && <PageError error={entry.error} what="Latest state" />}
      <DefList
        items={[
          ['Request', <Link href={paths.request(requestId)}>{requestId}</Link>],
          ['Started', <Time at={e.deployMarker.timestamp} date />],
          ['Started by', e.deployMarker.user ?? '—'],
          ['Actions', <DeployActionsTaken actions={e.actions} />],
          [
            'Ended',
            result ? (
              <>
                <Time at={result.timestamp} date /> ({duration(result.timestamp - e.deployMarker.timestamp)})
              </>
            ) : (
              '—'
            ),
          ],
          [
            'Canary',
            e.deploy.canaryDeploySettings?.enableCanaryDeploy
              ? `groups of ${e.deploy.canaryDeploySettings.instanceGroupSize}, ${e.deploy.canaryDeploySettings.acceptanceMode.toLowerCase()} acceptance`
              : 'no (one step)',
          ],
          ...(e.deployMarker.message ? ([['Message', e.deployMarker.message]] as [string, string][]) : []),
        ]}
      />
      {result && (
        <section
          aria-labelledby="result-h"
          className={`result result-${result.deployState === 'SUCCEEDED' ? 'good' : result.deployState === 'CANCELED' ? 'warn' : 'bad'}`}
        >
          <h2 id="result-h">
            Result: <Badge state={result.deployState} />
          </h2>
          <p className="result-message">{result.message}</p>
          {result.deployFailures.length > 0 && (
            <ul className="failures">
              {result.deployFailures.map((f, i, all) => (
                <li key={i}>
                  <strong>{reasonText(f.reason)}</strong>
                  {f.taskId && (
                    <>
                      {' '}
                      — <Link href={paths.task(f.taskId.id)}>task #{f.taskId.instanceNo}</Link>
                    </>
                  )}
                  : {f.message}
                  {f.taskId && all.findIndex((g) => g.taskId?.id === f.taskId?.id) === i && <StderrTail taskId={f.taskId.id} />}
                </li>
              ))}
            </ul>
          )}
        </section>
      )}
      {pending && progress && (
        <section aria-labelledby="progress-h">
          <h2 id="progress-h">Progress</h2>
          <DeployProgressBar progress={progress} />
          {r?.request.loadBalanced && <TrafficPanel requestId={requestId} deployId={deployId} />}
          <DeployActions
            requestId={requestId}
            deployId={deployId}
            progress={progress}
            instances={r?.pendingDeployState?.updatedRequest?.instances ?? r?.request.instances ?? progress.targetActiveInstances}
            deploy={e.deploy}
          />
        </section>
      )}
      {progress && (
        <section aria-labelledby="timeline-h">
          <h2 id="timeline-h">Timeline</h2>
          <Timeline
            progress={progress}
            deployId={deployId}
            startedAt={e.deployMarker.timestamp}
            pending={pending}
            {...(e.deployState && !pending ? { resultState: e.deployState } : {})}
            deploy={e.deploy}
            tasks={tasks.data ?? []}
            history={[...(tasks.data ?? []), ...(ended.data ?? [])]}
            {...(oldDeployId ? { oldDeployId } : {})}
            loadBalanced={r?.request.loadBalanced ?? Boolean(e.deploy.serviceBasePath)}
          />
          {progress.acceptanceResultMessageHistory.length > 0 && (
            <>
              <h3>Acceptance results</h3>
              <AcceptanceMessages messages={progress.acceptanceResultMessageHistory} />
            </>
          )}
        </section>
      )}
      {failedTasks.length > 0 && (
        <section aria-labelledby="failed-h">
          <h2 id="failed-h">Failed tasks</h2>
          <TaskTable tasks={failedTasks} caption="Failed tasks" empty="" showDeploy={false} />
        </section>
      )}
      <section aria-labelledby="dtasks-h">
        <h2 id="dtasks-h">Tasks of this deploy</h2>
        <TaskTable
          tasks={mine.filter((t) => !failedIds.has(t.taskId.id)).slice(0, 50)}
          caption="Tasks of this deploy"
          empty={failedTasks.length > 0 ? 'No other tasks.' : 'No tasks of this deploy.'}
          showDeploy={false}
        />
      </section>
      {progress && (
        <section aria-labelledby="log-h">
          <h2 id="log-h">Decision log</h2>
          <DecisionLog decisions={progress.decisionLog} />
        </section>
      )}
      <details className="spec">
        <summary>Deploy JSON</summary>
        <pre className="code">{JSON.stringify(e.deploy, null, 2)}</pre>
      </details>
    </>
  );
}
