// The last deploy's result on the request page: what happened and where capacity is now, kept
// after the deploy ended (a cancel or a failure does not vanish) until the person dismisses it.
import { useState } from 'react';
import type { DeployHistoryView, TaskView } from '../api/client.ts';
import { capacityOf } from '../core/capacity.ts';
import { Badge } from './components.tsx';
import { Link, paths } from './router.tsx';
import type { RequestParent } from './types.ts';

const key = (requestId: string) => `fledge.dismissed-result.${requestId}`;

function lastResult(history: DeployHistoryView[] | undefined): DeployHistoryView | undefined {
  return (history ?? [])
    .filter((h) => h.deployResult)
    .sort((a, b) => (b.deployResult?.timestamp ?? 0) - (a.deployResult?.timestamp ?? 0))[0];
}

export function ResultBanner({
  r,
  history,
  tasks,
}: {
  r: RequestParent;
  history: DeployHistoryView[] | undefined;
  tasks: TaskView[] | undefined;
}) {
  const requestId = r.request.id;
  const last = lastResult(history);
  const [dismissed, setDismissed] = useState(() => localStorage.getItem(key(requestId)));
  if (!last?.deployResult || r.pendingDeploy) return null;
  const deployId = last.deployMarker.deployId;
  if (dismissed === deployId) return null;
  const result = last.deployResult;
  const c = capacityOf(
    { instances: r.request.instances ?? 1, loadBalanced: r.request.loadBalanced === true },
    r.activeDeploy?.id,
    (tasks ?? []).map((t) => ({ ...t, lb: t.lb ?? {}, health: t.health ?? { state: 'UNKNOWN' } })),
  );
  const serving = c.loadBalanced
    ? `${c.inLb} of ${c.wanted} wanted healthy and in the load balancer`
    : `${c.healthy} of ${c.wanted} wanted healthy`;
  const where = c.deployId
    ? `${c.deployId === deployId ? 'Now serving' : 'Back on'} ${c.deployId}: ${serving}${c.others > 0 ? `; ${c.others} task(s) of other deploys still stopping` : ''}.`
    : 'No deploy is active.';
  const tone = result.deployState === 'SUCCEEDED' ? 'good' : result.deployState === 'CANCELED' ? 'warn' : 'bad';
  return (
    <section className={`result result-${tone}`} aria-labelledby="last-result-h">
      <button
        type="button"
        className="result-dismiss"
        onClick={() => {
          localStorage.setItem(key(requestId), deployId);
          setDismissed(deployId);
        }}
      >
        Dismiss
      </button>
      <h2 id="last-result-h">
        Last deploy <Link href={paths.deploy(requestId, deployId)}>{deployId}</Link>: <Badge state={result.deployState} />
      </h2>
      <p className="result-message">{result.message}</p>
      <p className="result-capacity">{where}</p>
    </section>
  );
}
