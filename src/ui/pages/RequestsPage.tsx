// All requests: type, state, instances, active deploy and a pending deploy's progress; filter
// by text and state (kept in the URL, so a filtered list is a link too); create a request.
import { useId, useState } from 'react';
import { client } from '../api.ts';
import { ActionButton, Badge, DeployProgressBar, Empty, Loading, PageError } from '../components.tsx';
import { useResource, useTitle } from '../hooks.ts';
import { Link, navigate, paths, useLocation } from '../router.tsx';
import { diffFields } from '../../core/deploy/diff.ts';
import type { RequestParent } from '../types.ts';

const STATES = ['ACTIVE', 'PAUSED', 'DEPLOYING_TO_UNPAUSE', 'DELETING'];

export function RequestsPage() {
  useTitle('Requests');
  const { search } = useLocation();
  const q = search.get('q') ?? '';
  const state = search.get('state') ?? '';
  const requests = useResource(
    'requests',
    () => client.listRequests(),
    () => true,
  );
  const setFilter = (next: { q?: string; state?: string }) => {
    const params = new URLSearchParams();
    const nq = next.q ?? q;
    const ns = next.state ?? state;
    if (nq) params.set('q', nq);
    if (ns) params.set('state', ns);
    const qs = params.toString();
    navigate(qs ? `/?${qs}` : '/', { replace: true });
  };
  const qid = useId();
  const sid = useId();

  const all = requests.data ?? [];
  const needle = q.trim().toLowerCase();
  const shown = all
    .filter((r) => !state || r.state === state || (state === 'DEPLOYING' && r.pendingDeployState))
    .filter((r) => !needle || searchText(r).includes(needle))
    .sort((a, b) => a.request.id.localeCompare(b.request.id));

  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>Requests</h1>
        <div className="actions">
          <NewRequestButton existing={requests.data ?? []} />
        </div>
      </div>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <p className="field">
          <label htmlFor={qid}>Filter</label>
          <input id={qid} type="search" placeholder="id, type, deploy…" value={q} onChange={(e) => setFilter({ q: e.target.value })} />
        </p>
        <p className="field">
          <label htmlFor={sid}>State</label>
          <select id={sid} value={state} onChange={(e) => setFilter({ state: e.target.value })}>
            <option value="">All states</option>
            <option value="DEPLOYING">Deploying</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {s.toLowerCase().replace(/_/g, ' ')}
              </option>
            ))}
          </select>
        </p>
        <p className="count" aria-live="polite">
          {requests.data ? `${shown.length} of ${all.length}` : ''}
        </p>
      </form>
      {requests.error !== undefined && <PageError error={requests.error} what="Requests" />}
      {requests.loading && <Loading />}
      {requests.data && all.length === 0 && (
        <Empty>
          No requests yet. Create one with <strong>New request</strong>, or <code>npx fledge request create -f request.json</code>.
        </Empty>
      )}
      {requests.data && all.length > 0 && shown.length === 0 && <Empty>No request matches this filter.</Empty>}
      {shown.length > 0 && (
        <div className="table-wrap">
          <table className="table requests-table">
            <caption className="sr-only">Requests</caption>
            <thead>
              <tr>
                <th scope="col">Request</th>
                <th scope="col">Type</th>
                <th scope="col">State</th>
                <th scope="col">Instances</th>
                <th scope="col">Active deploy</th>
                <th scope="col">Last deploy</th>
                <th scope="col" className="col-progress">
                  Pending deploy
                </th>
              </tr>
            </thead>
            <tbody>
              {shown.map((r) => (
                <RequestRow key={r.request.id} r={r} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function searchText(r: RequestParent): string {
  return [r.request.id, r.request.requestType, r.state, r.activeDeploy?.id, r.pendingDeploy?.id, ...(r.request.owners ?? [])]
    .join(' ')
    .toLowerCase();
}

function RequestRow({ r }: { r: RequestParent }) {
  // the last deploy that ended, kept by the server on the request (a cancel or failure stays shown)
  const last = r.lastDeployResult;
  const id = r.request.id;
  const counts = r.instanceCounts;
  const progress = r.pendingDeployState?.deployProgress;
  return (
    <tr>
      <th scope="row" data-label="Request">
        <Link href={paths.request(id)}>{id}</Link>
      </th>
      <td data-label="Type">{r.request.requestType.toLowerCase()}</td>
      <td data-label="State">
        <Badge state={r.state} />
      </td>
      <td data-label="Instances" className="num">
        {counts ? (
          // Counted against what is wanted; tasks beyond it (a canary's or a bounce's surge) are named as such.
          <span title={`${counts.healthy} healthy, ${counts.total} running; ${counts.desired} wanted`}>
            <span className={counts.healthy < counts.desired ? 'warn-text' : ''}>{Math.min(counts.healthy, counts.desired)}</span> of{' '}
            {counts.desired} wanted healthy
            {counts.total > counts.desired && <span className="muted"> +{counts.total - counts.desired} surge</span>}
          </span>
        ) : (
          r.request.instances
        )}
      </td>
      <td data-label="Active deploy">
        {r.activeDeploy ? <Link href={paths.deploy(id, r.activeDeploy.id)}>{r.activeDeploy.id}</Link> : <span className="muted">none</span>}
      </td>
      <td data-label="Last deploy">
        {last?.deployResult ? (
          <span title={last.deployResult.message}>
            <Link href={paths.deploy(id, last.deployId)}>{last.deployId}</Link> <Badge state={last.deployResult.deployState} />
          </span>
        ) : (
          <span className="muted">—</span>
        )}
      </td>
      <td data-label="Pending deploy" className="col-progress">
        {r.pendingDeploy && progress ? (
          <div className="pending-cell">
            <Link href={paths.deploy(id, r.pendingDeploy.id)}>{r.pendingDeploy.id}</Link>
            <DeployProgressBar progress={progress} compact />
          </div>
        ) : (
          <span className="muted">—</span>
        )}
      </td>
    </tr>
  );
}

// No id filled in: creating must never update a live request by accident.
const REQUEST_TEMPLATE = `{
  "id": "",
  "requestType": "SERVICE",
  "instances": 2,
  "loadBalanced": true
}`;

function NewRequestButton({ existing }: { existing: RequestParent[] }) {
  const [text, setText] = useState(REQUEST_TEMPLATE);
  const id = useId();
  let parseError: string | undefined;
  let parsed: { id?: unknown } | undefined;
  try {
    parsed = JSON.parse(text) as { id?: unknown };
  } catch (err) {
    parseError = (err as Error).message;
  }
  const current = typeof parsed?.id === 'string' ? existing.find((r) => r.request.id === parsed?.id) : undefined;
  // Posting replaces the request: fields left out go back to their defaults, so they show as removed.
  const changes = current && parsed ? diffFields(current.request, parsed, new Set(['timestamp'])) : [];
  const show = (v: unknown) => (v === undefined ? '' : JSON.stringify(v));
  return (
    <ActionButton
      label="New request"
      title={current ? `Update request ${current.request.id}` : 'Create a request'}
      confirmLabel={current ? `Update ${current.request.id}` : 'Create'}
      danger={current !== undefined}
      description={<p>Singularity request JSON.</p>}
      fields={
        <>
          <p className="field">
            <label htmlFor={id}>Request JSON</label>
            <textarea
              id={id}
              className="code-input"
              rows={8}
              spellCheck={false}
              value={text}
              onChange={(e) => setText(e.target.value)}
              aria-invalid={parseError ? true : undefined}
              aria-describedby={parseError ? `${id}-err` : undefined}
            />
            {parseError && (
              <span id={`${id}-err`} className="field-error">
                Not JSON: {parseError}
              </span>
            )}
          </p>
          {current && (
            <div className="warn-box" role="alert">
              <p>
                <strong>{current.request.id} exists.</strong> This updates it{changes.length === 0 ? ', with no change.' : ':'}
              </p>
              {changes.length > 0 && (
                <ul className="diff" aria-label="Changes to the request">
                  {changes.map((c) => (
                    <li key={c.field} className={`diff-${c.kind}`}>
                      <code>
                        {c.kind === 'added' ? '+' : c.kind === 'removed' ? '−' : '~'} {c.field}
                      </code>{' '}
                      {c.kind === 'changed'
                        ? `${show(c.old)} → ${show(c.new)}`
                        : c.kind === 'added'
                          ? show(c.new)
                          : `${show(c.old)} (back to its default)`}
                    </li>
                  ))}
                </ul>
              )}
            </div>
          )}
        </>
      }
      onConfirm={async () => {
        if (parseError || !parsed || typeof parsed.id !== 'string' || parsed.id.trim() === '')
          throw new Error(parseError ? `Not JSON: ${parseError}` : 'id: required (a new request needs an id)');
        const created = await client.createRequest(parsed as { id: string });
        navigate(paths.request(created.request.id));
      }}
    />
  );
}
