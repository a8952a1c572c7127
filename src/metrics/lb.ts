// The load balancer's traffic counters (balancers/traffic.ts) in Prometheus' text format, per
// service, deploy and task. Written by hand: they are cumulative counts the balancer already
// keeps, which prom-client's instruments (that count themselves) cannot take over.
import { LATENCY_BUCKETS_MS, STATUS_CLASSES, type TrafficTotal } from '../balancers/traffic.ts';

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

function labels(pairs: Record<string, string>): string {
  return `{${Object.entries(pairs)
    .map(([k, v]) => `${k}="${esc(v)}"`)
    .join(',')}}`;
}

export function lbExposition(totals: readonly TrafficTotal[], balancer: string): string {
  const out: string[] = [];
  const head = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  const base = (t: TrafficTotal) => ({ balancer, service: t.serviceId, deploy: t.deployId ?? '', task: t.taskId });

  head('fledge_lb_requests_total', 'counter', 'Requests answered through the load balancer, by the task that answered');
  for (const t of totals) out.push(`fledge_lb_requests_total${labels(base(t))} ${t.requests}`);
  head('fledge_lb_responses_total', 'counter', 'Responses by status class (the status the client got)');
  for (const t of totals) {
    for (const c of STATUS_CLASSES) out.push(`fledge_lb_responses_total${labels({ ...base(t), class: c })} ${t.responses[c]}`);
  }
  head(
    'fledge_lb_upstream_errors_total',
    'counter',
    'Requests the load balancer answered itself because the task failed them (refused, reset, timed out)',
  );
  for (const t of totals) out.push(`fledge_lb_upstream_errors_total${labels(base(t))} ${t.upstreamErrors}`);
  head('fledge_lb_request_duration_seconds', 'histogram', 'Time from the request received to the last byte of the response sent');
  for (const t of totals) {
    let cumulative = 0;
    LATENCY_BUCKETS_MS.forEach((bound, i) => {
      cumulative += t.latency.counts[i] ?? 0;
      out.push(`fledge_lb_request_duration_seconds_bucket${labels({ ...base(t), le: String(bound / 1000) })} ${cumulative}`);
    });
    cumulative += t.latency.counts[LATENCY_BUCKETS_MS.length] ?? 0;
    out.push(`fledge_lb_request_duration_seconds_bucket${labels({ ...base(t), le: '+Inf' })} ${cumulative}`);
    out.push(`fledge_lb_request_duration_seconds_sum${labels(base(t))} ${t.latency.sumMs / 1000}`);
    out.push(`fledge_lb_request_duration_seconds_count${labels(base(t))} ${cumulative}`);
  }
  return `${out.join('\n')}\n`;
}
