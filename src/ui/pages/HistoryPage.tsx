// Deploy history of a request: every deploy with its result and failure reasons.
import { client } from '../api.ts';
import { ActionButton, Badge, Empty, formMessage, Loading, MessageField, PageError, Time } from '../components.tsx';
import { duration, reasonText } from '../format.ts';
import { useResource, useTitle } from '../hooks.ts';
import { Link, paths } from '../router.tsx';
import { DeployActionsTaken } from './shared.tsx';

export function HistoryPage({ requestId }: { requestId: string }) {
  useTitle(`${requestId} · deploy history`);
  const history = useResource(
    `history:${requestId}`,
    () => client.deployHistory(requestId),
    (e) => e.kind !== 'task' && e.kind !== 'resync' && e.requestId === requestId,
  );
  const parent = useResource(
    `request:${requestId}`,
    () => client.getRequest(requestId),
    (e) => e.kind !== 'task' && e.kind !== 'resync' && e.requestId === requestId,
  );
  const active = parent.data?.activeDeploy?.id;
  const busy = parent.data?.pendingDeploy !== undefined;
  const entries = [...(history.data ?? [])].sort((a, b) => b.deployMarker.timestamp - a.deployMarker.timestamp);
  return (
    <>
      <nav aria-label="Breadcrumb" className="crumbs">
        <Link href={paths.requests()}>Requests</Link> / <Link href={paths.request(requestId)}>{requestId}</Link> /
      </nav>
      <h1 tabIndex={-1}>Deploy history</h1>
      {history.error !== undefined && <PageError error={history.error} what={`Request ${requestId}`} />}
      {history.loading && <Loading />}
      {history.data && entries.length === 0 && (
        <Empty>
          No deploys yet. <Link href={paths.newDeploy(requestId)}>Start one</Link>.
        </Empty>
      )}
      {entries.length > 0 && (
        <div className="table-wrap">
          <table className="table history-table">
            <caption className="sr-only">Deploys of {requestId}</caption>
            <thead>
              <tr>
                <th scope="col">Deploy</th>
                <th scope="col">Started</th>
                <th scope="col">Who</th>
                <th scope="col">Result</th>
                <th scope="col">Took</th>
                <th scope="col">Steps</th>
                <th scope="col">Why</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {entries.map((e) => {
                const result = e.deployResult;
                const failures = result?.deployFailures ?? [];
                return (
                  <tr key={e.deployMarker.deployId}>
                    <th scope="row" data-label="Deploy">
                      <Link href={paths.deploy(requestId, e.deployMarker.deployId)}>{e.deployMarker.deployId}</Link>
                    </th>
                    <td data-label="Started">
                      <Time at={e.deployMarker.timestamp} date />
                    </td>
                    <td data-label="Who">
                      <span>
                        started by <strong>{e.deployMarker.user ?? 'unknown'}</strong>
                      </span>
                      {e.actions && e.actions.length > 0 && <DeployActionsTaken actions={e.actions} />}
                    </td>
                    <td data-label="Result">
                      <Badge state={e.deployState} label={e.deployState === 'WAITING' ? 'in progress' : undefined} />
                    </td>
                    <td data-label="Took" className="num">
                      {result ? duration(result.timestamp - e.deployMarker.timestamp) : '…'}
                    </td>
                    <td data-label="Steps" className="num">
                      {e.deployProgress ? `${e.deployProgress.step} of ${e.deployProgress.totalSteps}` : '—'}
                    </td>
                    <td data-label="Why">
                      {result?.message ?? (e.deployMarker.message || <span className="muted">—</span>)}
                      {failures.length > 0 && (
                        <ul className="failures">
                          {failures.map((f, i) => (
                            <li key={i}>
                              <strong>{reasonText(f.reason)}</strong>
                              {f.taskId ? (
                                <>
                                  {' '}
                                  (<Link href={paths.task(f.taskId.id)}>task #{f.taskId.instanceNo}</Link>)
                                </>
                              ) : null}
                              : {f.message}
                            </li>
                          ))}
                        </ul>
                      )}
                    </td>
                    <td data-label="">
                      {e.deployMarker.deployId === active ? (
                        <span className="muted">active</span>
                      ) : result?.deployState === 'SUCCEEDED' && active ? (
                        <ActionButton
                          label="Roll back to this"
                          disabled={busy}
                          title={`Roll ${requestId} back to ${e.deployMarker.deployId}?`}
                          description={
                            <p>
                              Deploys {e.deployMarker.deployId}'s spec again as a new deploy, atomically; {active} keeps serving until it is
                              healthy.
                            </p>
                          }
                          confirmLabel={`Roll back to ${e.deployMarker.deployId}`}
                          fields={<MessageField />}
                          onConfirm={(f) => {
                            const message = formMessage(f);
                            return client.rollback(requestId, { deployId: e.deployMarker.deployId, ...(message ? { message } : {}) });
                          }}
                        />
                      ) : null}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
