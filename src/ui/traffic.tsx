// The traffic split and per-version signals of a pending deploy, from the load balancer
// (GET /api/requests/request/:id/traffic): a split bar ("v1 75 % / v2 25 %") and, per version,
// request rate, error rate and p99 with small charts over the last minutes — what a person
// looks at to decide a MANUAL canary. Polled: traffic changes without events.
import { useEffect, useState } from 'react';
import type { TrafficView, VersionTrafficView } from '../api/client.ts';
import { client } from './api.ts';

const POLL_MS = 3000;

export function TrafficPanel({ requestId, deployId }: { requestId: string; deployId: string }) {
  const [view, setView] = useState<TrafficView>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    let alive = true;
    const load = () =>
      client.traffic(requestId, { windowSeconds: 300, stepSeconds: 15 }).then(
        (v) => {
          if (!alive) return;
          setView(v);
          setError(undefined);
        },
        (err: unknown) => alive && setError(err instanceof Error ? err.message : String(err)),
      );
    void load();
    const timer = setInterval(() => void load(), POLL_MS);
    return () => {
      alive = false;
      clearInterval(timer);
    };
  }, [requestId]);

  if (error && !view) return <p className="muted">Traffic: {error}</p>;
  if (!view) return null;
  if (!view.available) return <p className="muted">Traffic: {view.note ?? 'not available on this server'}</p>;
  const versions = view.versions.filter((v) => v.tasksInLb > 0 || v.requests > 0);
  return (
    <section aria-labelledby="traffic-h" className="traffic">
      <h3 id="traffic-h">Traffic</h3>
      <SplitBar versions={versions} deployId={deployId} label={view.split} basis={view.splitBasis} />
      <div className="table-wrap">
        <table className="table traffic-table">
          <caption className="sr-only">Traffic per version, last {Math.round(view.windowSeconds / 60)} minutes</caption>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">In LB</th>
              <th scope="col">Requests/s</th>
              <th scope="col">Errors (5xx)</th>
              <th scope="col">p99</th>
              <th scope="col">Last {Math.round(view.windowSeconds / 60)} min</th>
            </tr>
          </thead>
          <tbody>
            {versions.map((v) => (
              <tr key={v.deployId}>
                <th scope="row" data-label="Version">
                  {v.deployId} <span className="muted">{v.role === 'pending' ? '(new)' : v.role === 'active' ? '(active)' : ''}</span>
                </th>
                <td data-label="In LB" className="num">
                  {v.tasksInLb}
                </td>
                <td data-label="Requests/s" className="num">
                  {v.requestsPerSecond.toFixed(1)}
                </td>
                <td data-label="Errors (5xx)" className={`num${(v.errorRate ?? 0) > 0 ? ' bad-text' : ''}`}>
                  {pct(v.errorRate)}
                </td>
                <td data-label="p99" className="num">
                  {v.latencyMs.p99 === null ? '—' : `${Math.round(v.latencyMs.p99)} ms`}
                </td>
                <td data-label="Chart">
                  <Spark label={`${v.deployId} requests per second`} values={v.series.map((p) => p.requestsPerSecond)} />
                  <Spark label={`${v.deployId} error rate`} values={v.series.map((p) => p.errorRate)} bad />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

const pct = (v: number | null) => (v === null ? '—' : `${(v * 100).toFixed(1)} %`);

function SplitBar({
  versions,
  deployId,
  label,
  basis,
}: {
  versions: VersionTrafficView[];
  deployId: string;
  label: string;
  basis: TrafficView['splitBasis'];
}) {
  const share = (v: VersionTrafficView) => (basis === 'requests' ? v.observedShare : v.intendedShare) ?? 0;
  return (
    <div className="split">
      <p className="split-label">
        <strong>{label}</strong>{' '}
        <span className="muted">
          {basis === 'requests' ? 'of the last minute’s requests' : 'of the tasks in the load balancer (few requests yet)'}
        </span>
      </p>
      <div className="split-bar" role="img" aria-label={`Traffic split: ${label}`}>
        {versions.map((v) => (
          <span
            key={v.deployId}
            className={v.deployId === deployId ? 'split-new' : 'split-old'}
            style={{ width: `${Math.max(0, Math.min(100, share(v) * 100))}%` }}
          >
            {share(v) >= 0.12 ? `${v.deployId} ${Math.round(share(v) * 100)} %` : ''}
          </span>
        ))}
      </div>
    </div>
  );
}

/** A small line chart; gaps where a point has no value. */
export function Spark({ values, label, bad = false }: { values: (number | null)[]; label: string; bad?: boolean }) {
  const w = 120;
  const h = 24;
  const max = Math.max(0, ...values.filter((v): v is number => v !== null));
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const pts = values.map((v, i) =>
    v === null ? null : `${(i * step).toFixed(1)},${(h - 2 - (max === 0 ? 0 : (v / max) * (h - 4))).toFixed(1)}`,
  );
  const d: string = pts.reduce<string>((acc, p, i) => (p === null ? acc : `${acc}${i === 0 || pts[i - 1] === null ? 'M' : 'L'}${p}`), '');
  return (
    <svg className={`spark${bad ? ' spark-bad' : ''}`} width={w} height={h} viewBox={`0 0 ${w} ${h}`} role="img" aria-label={label}>
      <path d={d} fill="none" strokeWidth="1.5" />
    </svg>
  );
}
