// New deploy: a JSON editor validated live by the API itself (POST /api/deploys/plan, whose
// 400 names the field), the plan preview (steps, ETA), and a confirmed submit.
import { useEffect, useId, useRef, useState } from 'react';
import type { DeployBody } from '../../api/client.ts';
import { client } from '../api.ts';
import { ActionButton, ErrorBox, Loading, PageError } from '../components.tsx';
import { duration } from '../format.ts';
import { useResource, useTitle } from '../hooks.ts';
import { Link, navigate, paths } from '../router.tsx';
import type { DeployPlan, RequestParent } from '../types.ts';

const VALIDATE_DEBOUNCE_MS = 350;

/** Fields of a stored deploy that are not part of the input schema. */
const DERIVED = ['timestamp', 'extra'];

function nextId(id: string, used: ReadonlySet<string>): string {
  const m = /^(.*?)(\d+)$/.exec(id);
  const [stem, n] = m ? [m[1] ?? '', Number(m[2])] : [`${id}-`, 1];
  let next = n + 1;
  // A deploy id is used up even by a failed deploy: the next free one.
  while (used.has(`${stem}${next}`)) next++;
  return `${stem}${next}`;
}

/**
 * Self-contained: the task runs in its own sandbox, so a path relative to the repo would not
 * be found there. A tiny HTTP service on $PORT with /health.
 */
const STARTER_COMMAND =
  "exec node -e \"require('http').createServer((q, s) => s.end((process.env.VERSION || 'v1') + '\\\\n')).listen(process.env.PORT, '127.0.0.1')\"";

export function template(r: RequestParent, used: ReadonlySet<string> = new Set()): string {
  const base = r.activeDeploy ?? r.pendingDeploy;
  if (base) {
    const copy: Record<string, unknown> = { ...base, id: nextId(base.id, used) };
    for (const k of DERIVED) delete copy[k];
    return JSON.stringify({ deploy: copy }, null, 2);
  }
  const first = used.has('v1') ? nextId('v1', used) : 'v1';
  return JSON.stringify(
    {
      deploy: {
        requestId: r.request.id,
        id: first,
        command: STARTER_COMMAND,
        env: { VERSION: first },
        healthcheck: { uri: '/health', startupIntervalSeconds: 0.5, intervalSeconds: 2 },
        // a load-balanced request's deploy needs a path and a group to be routed
        ...(r.request.loadBalanced ? { serviceBasePath: `/${r.request.id}`, loadBalancerGroups: ['default'] } : {}),
        canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'MANUAL' },
      },
    },
    null,
    2,
  );
}

type Check =
  | { kind: 'idle' }
  | { kind: 'json'; message: string }
  | { kind: 'checking' }
  | { kind: 'invalid'; error: unknown }
  | { kind: 'valid'; plan: DeployPlan; body: DeployBody };

/** The editor accepts a POST /api/deploys body ({deploy, message...}) or a bare deploy. */
export function toBody(value: unknown): DeployBody {
  if (value && typeof value === 'object' && !Array.isArray(value) && 'deploy' in value) return value as DeployBody;
  return { deploy: value as DeployBody['deploy'] };
}

export function NewDeployPage({ requestId }: { requestId: string }) {
  useTitle(`${requestId} · new deploy`);
  const parent = useResource(`request:${requestId}`, () => client.getRequest(requestId));
  const history = useResource(`history:${requestId}`, () => client.deployHistory(requestId));
  const crumbs = (
    <nav aria-label="Breadcrumb" className="crumbs">
      <Link href={paths.requests()}>Requests</Link> / <Link href={paths.request(requestId)}>{requestId}</Link> /
    </nav>
  );
  return (
    <>
      {crumbs}
      <h1 tabIndex={-1}>New deploy</h1>
      {parent.error !== undefined && !parent.data && <PageError error={parent.error} what={`Request ${requestId}`} />}
      {parent.loading && <Loading />}
      {parent.data && (history.data || history.error !== undefined) && (
        <Editor r={parent.data} used={new Set((history.data ?? []).map((h) => h.deployMarker.deployId))} />
      )}
    </>
  );
}

function Editor({ r, used }: { r: RequestParent; used: ReadonlySet<string> }) {
  const requestId = r.request.id;
  const [text, setText] = useState(() => template(r, used));
  const [check, setCheck] = useState<Check>({ kind: 'idle' });
  const seq = useRef(0);
  const id = useId();

  useEffect(() => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      setCheck({ kind: 'json', message: (err as Error).message });
      return;
    }
    const body = toBody(value);
    const mine = ++seq.current;
    setCheck((c) => (c.kind === 'valid' || c.kind === 'invalid' ? c : { kind: 'checking' }));
    const timer = setTimeout(() => {
      setCheck((c) => (c.kind === 'valid' || c.kind === 'invalid' ? c : { kind: 'checking' }));
      client.planDeploy(body).then(
        (plan) => mine === seq.current && setCheck({ kind: 'valid', plan, body }),
        (error: unknown) => mine === seq.current && setCheck({ kind: 'invalid', error }),
      );
    }, VALIDATE_DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [text]);

  const deployId = check.kind === 'valid' ? check.body.deploy.id : '';
  return (
    <div className="editor-layout">
      <div className="editor-pane">
        <p className="field">
          <label htmlFor={id}>Deploy JSON</label>
          <span id={`${id}-help`} className="help">
            The body of <code>POST /api/deploys</code> (<code>{'{ "deploy": {…}, "message": … }'}</code>) or just the deploy. Checked by the
            server as you type.
          </span>
          <textarea
            id={id}
            className="code-input editor"
            spellCheck={false}
            rows={22}
            value={text}
            onChange={(e) => setText(e.target.value)}
            aria-describedby={`${id}-help ${id}-status`}
            aria-invalid={check.kind === 'json' || check.kind === 'invalid' ? true : undefined}
          />
        </p>
      </div>
      <div className="editor-side">
        <div id={`${id}-status`} className="validation" aria-live="polite">
          {check.kind === 'json' && <div className="error-box">Not valid JSON: {check.message}</div>}
          {check.kind === 'checking' && <p className="muted">Checking with the server…</p>}
          {check.kind === 'invalid' && <ErrorBox error={check.error} what="The server would reject this deploy" />}
          {check.kind === 'valid' && <p className="ok-text">Valid. The plan below is what this deploy would do now.</p>}
        </div>
        <PlanPreview plan={check.kind === 'valid' ? check.plan : undefined} stale={check.kind !== 'valid'} />
        <div className="actions">
          <ActionButton
            label="Deploy"
            primary
            title={`Start deploy ${deployId}?`}
            disabled={check.kind !== 'valid'}
            description={check.kind === 'valid' ? <p>{planSummary(check.plan)}</p> : undefined}
            confirmLabel="Start deploy"
            onConfirm={async () => {
              if (check.kind !== 'valid') throw new Error('The deploy is not valid yet');
              await client.createDeploy(check.body);
              navigate(paths.deploy(requestId, check.body.deploy.id));
            }}
          />
          <Link className="btn" href={paths.request(requestId)}>
            Back
          </Link>
        </div>
      </div>
    </div>
  );
}

/** Machine time apart from the waits for people and timers (a MANUAL bound is no forecast). */
function planSummary(plan: DeployPlan): string {
  if (plan.estimate) return plan.estimate.summary;
  const n = plan.steps.length;
  return `${n} step${n === 1 ? '' : 's'}, about ${duration(plan.etaSeconds.min * 1000)}–${duration(plan.etaSeconds.max * 1000)}.`;
}

function PlanDiff({ plan }: { plan: DeployPlan }) {
  if (!plan.diff && !plan.requestDiff) return null;
  const changes = [...(plan.diff ?? []), ...(plan.requestDiff ?? []).map((c) => ({ ...c, field: `request.${c.field}` }))];
  const show = (v: unknown) => (v === undefined ? '' : JSON.stringify(v));
  return (
    <>
      <h3>{plan.activeDeployId ? `Changes against the active deploy ${plan.activeDeployId}` : 'No active deploy: all of it is new'}</h3>
      {plan.activeDeployId && changes.length === 0 && <p className="muted">None: the same deploy under a new id.</p>}
      {changes.length > 0 && (
        <ul className="diff" aria-label="Changes against the active deploy">
          {changes.map((c) => (
            <li key={c.field} className={`diff-${c.kind}`}>
              <code>
                {c.kind === 'added' ? '+' : c.kind === 'removed' ? '−' : '~'} {c.field}
              </code>{' '}
              {c.kind === 'changed' ? `${show(c.old)} → ${show(c.new)}` : c.kind === 'added' ? show(c.new) : show(c.old)}
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

function PlanPreview({ plan, stale }: { plan: DeployPlan | undefined; stale: boolean }) {
  return (
    <section aria-labelledby="plan-h" className={`plan${stale ? ' stale' : ''}`}>
      <h2 id="plan-h">Plan</h2>
      {!plan ? (
        <p className="empty">The plan appears here once the deploy is valid.</p>
      ) : (
        <>
          <p>
            <strong>{planSummary(plan)}</strong>
          </p>
          {plan.warnings.length > 0 && (
            <ul className="warnings">
              {plan.warnings.map((w) => (
                <li key={w}>{w}</li>
              ))}
            </ul>
          )}
          <div className="table-wrap">
            <table className="table plan-table">
              <caption className="sr-only">Deploy steps</caption>
              <thead>
                <tr>
                  <th scope="col">Step</th>
                  <th scope="col">New</th>
                  <th scope="col">Old</th>
                  <th scope="col">In LB (new / old)</th>
                  <th scope="col">New share</th>
                  <th scope="col">Acceptance</th>
                  <th scope="col">What it does</th>
                </tr>
              </thead>
              <tbody>
                {plan.steps.map((s) => (
                  <tr key={s.step}>
                    <th scope="row" data-label="Step" className="num">
                      {s.step}
                    </th>
                    <td data-label="New" className="num">
                      {s.newInstances}
                    </td>
                    <td data-label="Old" className="num">
                      {s.oldInstances}
                    </td>
                    <td data-label="In LB" className="num">
                      {s.loadBalanced.new} / {s.loadBalanced.old}
                    </td>
                    <td data-label="New share" className="num">
                      {s.trafficShare === null || s.trafficShare === undefined ? '—' : `${Math.round(s.trafficShare * 100)} %`}
                    </td>
                    <td data-label="Acceptance">
                      {s.acceptance.mode.toLowerCase()}
                      {s.acceptance.waitMillis ? ` ${duration(s.acceptance.waitMillis)}` : ''}
                      {s.acceptance.checks?.length
                        ? ` (${s.acceptance.checks.map((c) => (typeof c === 'string' ? c : JSON.stringify(c))).join(', ')})`
                        : ''}
                    </td>
                    <td data-label="What it does">{s.description ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <PlanDiff plan={plan} />
        </>
      )}
    </section>
  );
}
