// The HAProxy configuration and route maps Fledge writes: a pure function of the balancer's
// state, so what is on disk is what is live and a restart (of HAProxy or of Fledge) rebuilds it.
import { createHash } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import type { RoutingRules } from '../../core/model.ts';
import type { ClientLimits } from '../limits.ts';

export interface ServerModel {
  /** HAProxy server name (derived from the task id) */
  name: string;
  host: string;
  port: number;
  /** HAProxy weight 0..256 (runtime `set server … weight` changes it; written here so a restart keeps it) */
  weight: number;
  /** leaving rotation: written `disabled`, so a restarted HAProxy sends it nothing new */
  draining: boolean;
}

export interface BackendModel {
  /** HAProxy backend name: a slot, assigned to a service or spare */
  name: string;
  /** the service using this slot, undefined for a spare */
  serviceId?: string;
  basePath?: string;
  servers: ServerModel[];
  /**
   * Routing rules written for this backend (routingLines). Inert unless the routing map names
   * a deploy for it: clearing routing is a runtime map change, and the rules stay written, so
   * the next deploy with the same rules needs no reload either.
   */
  rules?: RoutingRules;
}

export interface ConfigModel {
  /** managed: `master-worker` in global */
  masterWorker: boolean;
  bindHost: string;
  bindPort: number;
  statsSocket: string;
  exactMap: string;
  prefixMap: string;
  /** routing: backend → pending deploy, and the servers of each version (routingMapEntries) */
  routingMap: string;
  /** routing: server → its deploy, for the sticky cookie */
  routingServersMap: string;
  /** bounds how long an old worker keeps serving after a reload */
  hardStopAfterMs: number;
  connectTimeoutMs: number;
  /** an upstream silent this long fails the attempt (retried elsewhere when safe, else 504) */
  serverTimeoutMs: number;
  /** what every server line (and runtime `add server`) carries after its address: serverParams() */
  serverParams: string;
  /** the client side's limits (the builtin proxy's equivalents) */
  limits: ClientLimits;
  /** proxies (IPs, CIDR ranges) whose X-Forwarded-* headers are kept; others' are deleted */
  trustForwardedFrom: readonly string[];
  backends: BackendModel[];
}

/**
 * Passive protection, HAProxy's way: a TCP connect check every `backoffMs` marks a server down
 * after `failures` refused (or timed-out) connects in a row and up again at the first that
 * works; and requests HAProxy could not send elsewhere are observed (layer 7: resets,
 * timeouts, broken or 5xx answers), `failures` errors in a row marking it down too. (HAProxy
 * does not count a failure it retried on another server: its L7 retries bypass the observation.)
 * HAProxy only routes around a server for that while: the health verdict, and the task's
 * membership, stay Fledge's. 0 failures: none of this.
 */
export function serverParams(failures: number, backoffMs: number): string {
  if (failures <= 0) return '';
  const ms = `${Math.max(100, Math.round(backoffMs))}`;
  return `check inter ${ms} fastinter ${ms} downinter ${ms} rise 1 fall ${failures} observe layer7 error-limit ${failures} on-error mark-down`;
}

/** The request may be sent again to another server after it was sent: idempotent, without a body. */
const L7_RETRY_UNLESS =
  '{ method GET HEAD OPTIONS TRACE PUT DELETE } !{ req.hdr(content-length) -m found } !{ req.hdr(transfer-encoding) -m found }';

/** Room HAProxy keeps in each buffer for header rewrites: headers get tune.bufsize minus this. */
const MAX_REWRITE = 1024;
/** What a client says about earlier hops, believed only from a trusted proxy. */
const FORWARDING_HEADERS = [
  'X-Forwarded-For',
  'X-Forwarded-Host',
  'X-Forwarded-Proto',
  'X-Forwarded-Port',
  'X-Forwarded-Prefix',
  'X-Forwarded-Server',
  'X-Real-IP',
  'Forwarded',
];

export const NO_SERVICE_BACKEND = 'fledge_no_service';
/**
 * The ring buffer HAProxy logs one line per request into (read through the stats socket with
 * `show events`: traffic-log.ts). 1 MiB holds about 15 000 lines, what Fledge may fall behind.
 */
export const TRAFFIC_RING = 'fledge_traffic';
export const TRAFFIC_RING_BYTES = 1 << 20;
/** marker, worker pid, request counter, backend, server, status, total active ms, termination state */
export const TRAFFIC_LOG_FORMAT = 'F %pid %rt %b %s %ST %Ta %ts';

export function slotName(index: number): string {
  return `fledge_b${index}`;
}

/** HAProxy server names allow [A-Za-z0-9_.:-]; anything else (or a long id) gets a hash suffix. */
export function serverName(taskId: string): string {
  const clean = taskId.replace(/[^A-Za-z0-9_.:-]/g, '_');
  if (clean === taskId && clean.length <= 64 && clean.length > 0) return clean;
  const hash = createHash('sha256').update(taskId).digest('hex').slice(0, 10);
  return `${clean.slice(0, 50)}-${hash}`;
}

/** Route map entries: `/api` exactly (map_str) and `/api/…` by prefix (map_beg, longest match). */
export function mapEntries(backends: BackendModel[]): { exact: [string, string][]; prefix: [string, string][] } {
  const exact: [string, string][] = [];
  const prefix: [string, string][] = [];
  for (const b of backends) {
    if (b.basePath === undefined) continue;
    if (b.basePath === '/') prefix.push(['/', b.name]);
    else {
      exact.push([b.basePath, b.name]);
      prefix.push([`${b.basePath}/`, b.name]);
    }
  }
  const byKey = (x: [string, string], y: [string, string]) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0);
  return { exact: exact.sort(byKey), prefix: prefix.sort(byKey) };
}

export function renderMap(entries: [string, string][]): string {
  return `# Generated by Fledge; kept equal to HAProxy's runtime map.\n${entries.map(([k, v]) => `${k} ${v}\n`).join('')}`;
}

const seconds = (ms: number) => `${Math.max(1, Math.ceil(ms / 1000))}s`;
const millis = (ms: number) => `${Math.max(1, Math.round(ms))}ms`;

export function renderConfig(m: ConfigModel): string {
  const lines: string[] = [
    '# Generated by Fledge: rewritten on every change, so it always matches the runtime state.',
    '# Servers and routes change live through the runtime API; a reload only adds backends.',
    'global',
    ...(m.masterWorker ? ['  master-worker'] : []),
    // expose-fd listeners: a reloaded worker takes the listening sockets over this socket, so
    // no connection is refused during a reload.
    `  stats socket ${m.statsSocket} mode 600 level admin expose-fd listeners`,
    '  stats timeout 2m',
    `  hard-stop-after ${seconds(m.hardStopAfterMs)}`,
    `  maxconn ${m.limits.maxConnections}`,
    // Request line plus headers may fill a buffer but the room kept for rewrites: larger is a 400.
    `  tune.bufsize ${m.limits.maxHeaderBytes + MAX_REWRITE}`,
    `  tune.maxrewrite ${MAX_REWRITE}`,
    '',
    `ring ${TRAFFIC_RING}`,
    '  format raw',
    '  maxlen 256',
    `  size ${TRAFFIC_RING_BYTES}`,
    '',
    'defaults',
    '  mode http',
    // As the builtin (proxy.ts): a request is sent once more, to another server, when the
    // connection failed — or, for an idempotent one without a body, when the server closed or
    // stayed silent past `timeout server` before answering (the frontend turns that off otherwise).
    '  option redispatch 1',
    '  retries 1',
    '  retry-on conn-failure empty-response response-timeout',
    `  timeout connect ${millis(m.connectTimeoutMs)}`,
    // HAProxy has no deadline for a whole request: the client's inactivity gets that bound.
    `  timeout client ${millis(m.limits.requestTimeoutMs)}`,
    `  timeout server ${millis(m.serverTimeoutMs)}`,
    // the whole request head, from the first byte (slow clients)
    `  timeout http-request ${millis(m.limits.headerTimeoutMs)}`,
    `  timeout http-keep-alive ${millis(m.limits.keepAliveTimeoutMs)}`,
    '  timeout queue 5s',
    '',
    'frontend fledge',
    `  bind ${m.bindHost}:${m.bindPort}`,
    `  http-request disable-l7-retry unless ${L7_RETRY_UNLESS}`,
    `  maxconn ${m.limits.maxConnections}`,
    // One line per request into the ring: Fledge's per-task traffic counters.
    `  log ring@${TRAFFIC_RING} local0 info`,
    `  log-format "${TRAFFIC_LOG_FORMAT}"`,
    // HAProxy keeps these framing headers but would pass the Connection token on, asking the
    // next hop to drop them (a smuggled request there): refused, like the builtin proxy does.
    `  http-request deny status 400 content-type application/json string ${JSON.stringify(JSON.stringify({ error: 'bad request: the Connection header may not name content-length, transfer-encoding or host' }))} if { req.hdr(connection) -m str -i content-length transfer-encoding host }`,
    // Hop-by-hop headers HAProxy would pass on (it handles Connection and Upgrade itself).
    '  http-request del-header Keep-Alive',
    '  http-request del-header Proxy-Connection',
    '  http-request del-header Proxy-Authorization',
    // Wait for the body (what fits in a buffer) before forwarding, under timeout http-request:
    // a body dripped byte by byte is cut like slow headers are.
    '  option http-buffer-request',
    ...forwardingRules(m.trustForwardedFrom),
    `  use_backend %[path,map_str(${m.exactMap})] if { path,map_str(${m.exactMap}) -m found }`,
    `  use_backend %[path,map_beg(${m.prefixMap})] if { path,map_beg(${m.prefixMap}) -m found }`,
    `  default_backend ${NO_SERVICE_BACKEND}`,
    '',
    `backend ${NO_SERVICE_BACKEND}`,
    // Loads the routing maps, so they can be changed at runtime before any backend has rules.
    `  http-request set-var(txn.fl_dep) str(-),map_str(${m.routingMap}) if { str(-),map_str(${m.routingServersMap}) -m found }`,
    '  http-request return status 503 content-type application/json string "{\\"error\\":\\"no service is routed at this path\\"}"',
  ];
  for (const b of m.backends) {
    lines.push('', `backend ${b.name}`);
    lines.push(
      b.serviceId !== undefined
        ? `  # service ${JSON.stringify(b.serviceId)} at ${b.basePath ?? ''}`
        : '  # spare: taken by the next new service without a reload',
    );
    lines.push('  balance roundrobin');
    if (b.rules && b.basePath !== undefined) lines.push(...routingLines(b.name, b.basePath, b.rules, m));
    const params = m.serverParams ? ` ${m.serverParams}` : '';
    for (const s of b.servers)
      lines.push(`  server ${s.name} ${s.host}:${s.port} weight ${s.weight}${params}${s.draining ? ' disabled' : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * routing.ts's decision in HAProxy's words, evaluated before the server is chosen. The routing
 * map gives the pending deploy (txn.fl_dep; absent: routing is off and nothing here applies);
 * the rules set txn.fl_ver to n(ew) or o(ld); a random server of that version is then looked up
 * in the same map (`<backend>.<v>` its count, `<backend>.<v>.<i>` the servers) and chosen with
 * `use-server` — a version without a server in rotation has no entry, and the normal balancing
 * applies (never a 503). The sticky cookie names the deploy of the server that answered.
 */
export function routingLines(
  backend: string,
  basePath: string,
  rules: RoutingRules,
  m: Pick<ConfigModel, 'routingMap' | 'routingServersMap'>,
): string[] {
  const on = '{ var(txn.fl_dep) -m found }';
  const unset = '!{ var(txn.fl_ver) -m found }';
  const out = [
    '  # routing for testers and cohorts (balancers/routing.ts), on while the routing map names a deploy',
    `  http-request set-var(txn.fl_dep) str(${backend}),map_str(${m.routingMap})`,
  ];
  for (const rule of rules.match) {
    const fetch = 'header' in rule ? `req.fhdr(${arg(rule.header)})` : `req.cook(${arg(rule.cookie)})`;
    const test = rule.value === undefined ? '-m found' : `-m str ${rule.value}`;
    out.push(`  http-request set-var(txn.fl_ver) str(n) if ${on} ${unset} { ${fetch} ${test} }`);
  }
  const { cookie, header, percent } = rules.sticky ?? {};
  if (cookie !== undefined) {
    out.push(
      `  http-request set-var(txn.fl_ck) req.cook(${arg(cookie)}) if ${on} ${unset}`,
      `  http-request set-var(txn.fl_ver) str(n) if ${unset} { var(txn.fl_ck),strcmp(txn.fl_dep) eq 0 }`,
      `  http-request set-var(txn.fl_ver) str(o) if ${unset} { var(txn.fl_ck) -m found }`,
    );
  }
  if (header !== undefined) {
    out.push(
      `  http-request set-var(txn.fl_ver) str(n) if ${on} ${unset} { req.fhdr(${arg(header)}),crc32,mod(100) lt ${percent ?? 0} }`,
      `  http-request set-var(txn.fl_ver) str(o) if ${on} ${unset} { req.fhdr(${arg(header)}) -m found }`,
    );
  }
  out.push(
    `  http-request set-var(txn.fl_cnt) str(${backend}.),concat(,txn.fl_ver,),map_str(${m.routingMap}) if { var(txn.fl_ver) -m found }`,
    '  http-request set-var(txn.fl_i) rand,mod(txn.fl_cnt) if { var(txn.fl_cnt) -m found }',
    `  http-request set-var(txn.fl_srv) str(${backend}.),concat(,txn.fl_ver,.),concat(,txn.fl_i,),map_str(${m.routingMap}) if { var(txn.fl_i) -m found }`,
    '  use-server %[var(txn.fl_srv)] if { var(txn.fl_srv) -m found }',
  );
  if (cookie !== undefined) {
    const served = `srv_name,map_str(${m.routingServersMap})`;
    out.push(
      `  http-response add-header Set-Cookie "${cookie}=%[${served}]; Path=${basePath}; HttpOnly; SameSite=Lax" if ${on} ${unset} { ${served} -m found }`,
    );
  }
  return out;
}

/** A header or cookie name inside a sample fetch's parentheses: `#` would start a comment. */
function arg(name: string): string {
  return name.replace(/#/g, '\\#');
}

/** The routing map's entries for one backend whose routing is on: its deploy, and each version's servers in rotation. */
export function routingMapEntries(backend: string, deployId: string, servers: { name: string; deployId?: string }[]): [string, string][] {
  const out: [string, string][] = [[backend, deployId]];
  for (const v of ['n', 'o'] as const) {
    const of = servers.filter((s) => (s.deployId === deployId) === (v === 'n'));
    if (of.length === 0) continue;
    out.push([`${backend}.${v}`, String(of.length)]);
    of.forEach((s, i) => out.push([`${backend}.${v}.${i}`, s.name]));
  }
  return out;
}

/** Client X-Forwarded-* dropped unless a trusted proxy sent them; then this hop's own. */
function forwardingRules(trusted: readonly string[]): string[] {
  const unless = trusted.length > 0 ? ` unless { src ${trusted.join(' ')} }` : '';
  return [
    ...FORWARDING_HEADERS.map((h) => `  http-request del-header ${h}${unless}`),
    '  http-request set-header X-Forwarded-Host %[req.hdr(host)] unless { req.hdr(x-forwarded-host) -m found }',
    '  http-request set-header X-Forwarded-Proto http unless { req.hdr(x-forwarded-proto) -m found }',
    // appends the client's address to what is left of the chain
    '  option forwardfor',
  ];
}

/** Write via a temporary file and rename, so HAProxy never reads half a file. 0600: it is Fledge's and HAProxy's alone. */
export function writeAtomic(path: string, content: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  writeFileSync(tmp, content, { mode: 0o600 });
  renameSync(tmp, path);
}
