// Typed HTTP client for the Fledge API (api.md), shared by the CLI and the web UI: it uses
// only fetch, TextDecoder and AbortSignal, so it runs in Node 20 and in browsers alike.
export type * from './types.ts';
import type {
  Role,
  TrafficView,
  TaskIdGroups,
  PendingDeployView,
  RequestParent,
  PendingRunView,
  RunState,
  RunNowBody,
  TaskView,
  HostView,
  DeployHistoryView,
  Whoami,
  TokenView,
  CreatedToken,
  AuditEntry,
  AuditFilter,
  DeployPlan,
  LogChunk,
  StateCounts,
  FledgeStreamEvent,
} from './types.ts';

/** An `{message, details}` error answer from the API. */
export class FledgeApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: ApiErrorDetail[] = [],
    readonly method = '',
    readonly path = '',
  ) {
    super(message);
    this.name = 'FledgeApiError';
  }
}

/** The server could not be reached at all (refused, DNS, reset...). */
export class FledgeConnectionError extends Error {
  constructor(
    readonly url: string,
    readonly reason: string,
  ) {
    super(`cannot reach Fledge at ${url}: ${reason}`);
    this.name = 'FledgeConnectionError';
  }
}

export interface ApiErrorDetail {
  field?: string;
  rule?: string;
  message?: string;
  [key: string]: unknown;
}

// ---- inputs: raw Singularity-shaped JSON, validated by the server ----

export interface RequestInput {
  id: string;
  [key: string]: unknown;
}

export interface DeployInput {
  requestId: string;
  id: string;
  [key: string]: unknown;
}

export interface DeployBody {
  deploy: DeployInput;
  message?: string;
  unpauseOnSuccessfulDeploy?: boolean;
  updatedRequest?: RequestInput;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** What the client reads of an HTTP answer (a fetch Response has it all). */
export interface HttpAnswer {
  ok: boolean;
  status: number;
  statusText: string;
  text(): Promise<string>;
  /** the body, decoded as it arrives (the event stream) */
  chunks(): AsyncIterable<string>;
}

export type Transport = (
  url: string,
  init: { method: Method; headers: Record<string, string>; body?: string; signal?: AbortSignal },
) => Promise<HttpAnswer>;

export interface ClientOptions {
  token?: string;
  /** for tests and the UI (which adds its session) */
  fetch?: typeof fetch;
  /** instead of fetch: the CLI's node:http one, which starts far faster than Node's fetch */
  transport?: Transport;
}

const seg = encodeURIComponent;

export class FledgeClient {
  readonly baseUrl: string;
  readonly #token: string | undefined;
  readonly #transport: Transport;

  constructor(baseUrl: string, options: ClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.#token = options.token;
    this.#transport = options.transport ?? fetchTransport(options.fetch ?? ((input, init) => fetch(input, init)));
  }

  // ---- requests ----
  createRequest(request: RequestInput): Promise<RequestParent> {
    return this.#call('POST', '/api/requests', request);
  }
  listRequests(): Promise<RequestParent[]> {
    return this.#call('GET', '/api/requests');
  }
  getRequest(requestId: string): Promise<RequestParent> {
    return this.#call('GET', `/api/requests/request/${seg(requestId)}`);
  }
  scale(requestId: string, instances: number, message?: string): Promise<RequestParent> {
    return this.#call('PUT', `/api/requests/request/${seg(requestId)}/scale`, { instances, ...opt({ message }) });
  }
  pause(requestId: string, options: { message?: string; killTasks?: boolean } = {}): Promise<RequestParent> {
    return this.#call('POST', `/api/requests/request/${seg(requestId)}/pause`, opt(options));
  }
  unpause(requestId: string, options: { message?: string } = {}): Promise<RequestParent> {
    return this.#call('POST', `/api/requests/request/${seg(requestId)}/unpause`, opt(options));
  }
  bounce(requestId: string, options: { message?: string; incremental?: boolean } = {}): Promise<RequestParent> {
    return this.#call('POST', `/api/requests/request/${seg(requestId)}/bounce`, opt(options));
  }
  deleteRequest(requestId: string, options: { message?: string; deleteFromLoadBalancer?: boolean } = {}): Promise<RequestParent> {
    return this.#call('DELETE', `/api/requests/request/${seg(requestId)}`, opt(options));
  }
  runNow(requestId: string, body: RunNowBody = {}): Promise<RequestParent & { pendingRequest: PendingRunView }> {
    return this.#call('POST', `/api/requests/request/${seg(requestId)}/run`, body);
  }
  trackRun(requestId: string, runId: string): Promise<RunState> {
    return this.#call('GET', `/api/track/run/${seg(requestId)}/${seg(runId)}`);
  }
  rollback(requestId: string, options: { message?: string; deployId?: string } = {}): Promise<RequestParent & { rollbackTo?: string }> {
    return this.#call('POST', `/api/requests/request/${seg(requestId)}/rollback`, opt(options));
  }

  /** The live traffic split and per-version rates from the load balancer. */
  traffic(requestId: string, options: { windowSeconds?: number; stepSeconds?: number } = {}): Promise<TrafficView> {
    const query = new URLSearchParams();
    if (options.windowSeconds !== undefined) query.set('windowSeconds', String(options.windowSeconds));
    if (options.stepSeconds !== undefined) query.set('stepSeconds', String(options.stepSeconds));
    const qs = query.toString();
    return this.#call('GET', `/api/requests/request/${seg(requestId)}/traffic${qs ? `?${qs}` : ''}`);
  }

  // ---- deploys ----
  createDeploy(body: DeployBody): Promise<RequestParent> {
    return this.#call('POST', '/api/deploys', body);
  }
  planDeploy(body: DeployBody): Promise<DeployPlan> {
    return this.#call('POST', '/api/deploys/plan', body);
  }
  pendingDeploys(): Promise<PendingDeployView[]> {
    return this.#call('GET', '/api/deploys/pending');
  }
  cancelDeploy(requestId: string, deployId: string): Promise<RequestParent> {
    return this.#call('DELETE', `/api/deploys/deploy/${seg(deployId)}/request/${seg(requestId)}`);
  }
  updateDeploy(requestId: string, deployId: string, targetActiveInstances: number): Promise<RequestParent> {
    return this.#call('POST', '/api/deploys/update', { requestId, deployId, targetActiveInstances });
  }
  advanceDeploy(requestId: string, deployId: string, message?: string): Promise<RequestParent> {
    return this.#call('POST', '/api/deploys/advance', { requestId, deployId, ...opt({ message }) });
  }
  rejectDeploy(requestId: string, deployId: string, message?: string): Promise<RequestParent> {
    return this.#call('POST', '/api/deploys/reject', { requestId, deployId, ...opt({ message }) });
  }
  deployHistory(requestId: string): Promise<DeployHistoryView[]> {
    return this.#call('GET', `/api/history/request/${seg(requestId)}/deploys`);
  }
  deployHistoryEntry(requestId: string, deployId: string): Promise<DeployHistoryView> {
    return this.#call('GET', `/api/history/request/${seg(requestId)}/deploy/${seg(deployId)}`);
  }

  // ---- tasks ----
  activeTasks(): Promise<TaskView[]> {
    return this.#call('GET', '/api/tasks/active');
  }
  requestTasks(requestId: string): Promise<TaskView[]> {
    return this.#call('GET', `/api/tasks/request/${seg(requestId)}`);
  }
  taskIds(requestId: string): Promise<TaskIdGroups> {
    return this.#call('GET', `/api/tasks/ids/request/${seg(requestId)}`);
  }
  getTask(taskId: string): Promise<TaskView> {
    return this.#call('GET', `/api/tasks/task/${seg(taskId)}`);
  }
  killTask(taskId: string, options: { message?: string; waitForReplacementTask?: boolean } = {}): Promise<TaskView> {
    return this.#call('DELETE', `/api/tasks/task/${seg(taskId)}`, opt(options));
  }
  readLogs(taskId: string, path: 'stdout' | 'stderr' = 'stdout', offset = 0, length?: number): Promise<LogChunk> {
    const query = new URLSearchParams({ path, offset: String(offset) });
    if (length !== undefined) query.set('length', String(length));
    return this.#call('GET', `/api/sandbox/${seg(taskId)}/read?${query.toString()}`);
  }
  /** The last `bytes` of a task's stdout or stderr, from a line start. */
  tailLogs(taskId: string, path: 'stdout' | 'stderr' = 'stderr', bytes = 2048): Promise<LogChunk> {
    return this.#call('GET', `/api/sandbox/${seg(taskId)}/read?${new URLSearchParams({ path, tail: String(bytes) }).toString()}`);
  }

  // ---- hosts ----
  listHosts(): Promise<HostView[]> {
    return this.#call('GET', '/api/hosts');
  }
  getHost(hostId: string): Promise<HostView> {
    return this.#call('GET', `/api/hosts/${seg(hostId)}`);
  }
  changeHost(hostId: string, action: 'decommission' | 'activate' | 'freeze', message?: string): Promise<HostView> {
    return this.#call('POST', `/api/hosts/${seg(hostId)}/${action}`, opt({ message }));
  }

  // ---- operations ----
  state(): Promise<StateCounts> {
    return this.#call('GET', '/api/state');
  }
  health(): Promise<{ status: string }> {
    return this.#call('GET', '/health');
  }

  // ---- auth ----
  whoami(): Promise<Whoami> {
    return this.#call('GET', '/api/auth/whoami');
  }
  listTokens(): Promise<TokenView[]> {
    return this.#call('GET', '/api/tokens');
  }
  createToken(name: string, role: Role): Promise<CreatedToken> {
    return this.#call('POST', '/api/tokens', { name, role });
  }
  revokeToken(name: string): Promise<{ name: string; revoked: boolean }> {
    return this.#call('DELETE', `/api/tokens/${seg(name)}`);
  }
  audit(filter: AuditFilter = {}): Promise<AuditEntry[]> {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(filter)) if (v !== undefined) query.set(k, String(v));
    const qs = query.toString();
    return this.#call('GET', `/api/audit${qs ? `?${qs}` : ''}`);
  }

  /**
   * Follow `GET /api/events` and call `onEvent` per event. Resolves when the server ends the
   * stream or `signal` aborts; rejects if the stream cannot be opened or breaks.
   */
  async events(onEvent: (event: FledgeStreamEvent) => void, signal?: AbortSignal): Promise<void> {
    const res = await this.#send('GET', '/api/events', undefined, signal, { Accept: 'text/event-stream' });
    if (!res.ok) throw await apiError(res, 'GET', '/api/events');
    const parser = new SseParser(onEvent);
    try {
      for await (const chunk of res.chunks()) parser.push(chunk);
      parser.end();
    } catch (err) {
      if (signal?.aborted) return;
      throw err;
    }
  }

  async #call<T>(method: Method, path: string, body?: unknown): Promise<T> {
    const res = await this.#send(method, path, body);
    if (!res.ok) throw await apiError(res, method, path);
    const text = await res.text();
    return (text === '' ? undefined : fledgeFields(JSON.parse(text))) as T;
  }

  async #send(method: Method, path: string, body?: unknown, signal?: AbortSignal, extra: Record<string, string> = {}): Promise<HttpAnswer> {
    const headers: Record<string, string> = { Accept: 'application/json', ...extra };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (this.#token) headers.Authorization = `Bearer ${this.#token}`;
    try {
      return await this.#transport(this.baseUrl + path, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new FledgeConnectionError(this.baseUrl, connectReason(err));
    }
  }
}

/**
 * The server writes Singularity's shapes with Fledge's values alongside (fledgeLbUpdates,
 * fledgeAcceptanceMode, fledgeDeployFailures: api/singularity-shapes.ts); this client reads
 * Fledge's, under the field names of Fledge's own types.
 */
export function fledgeFields(value: unknown, depth = 0): unknown {
  if (depth > 64 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => fledgeFields(v, depth + 1));
  const o = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) out[k] = fledgeFields(v, depth + 1);
  if ('fledgeLbUpdates' in o) {
    out.lbUpdates = out.fledgeLbUpdates;
    if ('fledgePendingLbUpdate' in o) out.pendingLbUpdate = out.fledgePendingLbUpdate;
    else delete out.pendingLbUpdate;
  }
  if ('fledgeAcceptanceMode' in o) out.acceptanceMode = o.fledgeAcceptanceMode;
  if ('fledgeDeployFailures' in o) out.deployFailures = out.fledgeDeployFailures;
  return out;
}

/** Drop undefined fields so the server sees only what the caller set. */
function opt<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A Transport over fetch (the browser's, or Node's). */
function fetchTransport(f: typeof fetch): Transport {
  return async (url, init) => {
    const res = await f(url, init);
    return {
      ok: res.ok,
      status: res.status,
      statusText: res.statusText,
      text: () => res.text(),
      async *chunks() {
        if (!res.body) return;
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            yield decoder.decode(value, { stream: true });
          }
          const rest = decoder.decode();
          if (rest !== '') yield rest;
        } finally {
          reader.releaseLock();
        }
      },
    };
  };
}

async function apiError(res: HttpAnswer, method: string, path: string): Promise<FledgeApiError> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { message?: unknown; details?: unknown };
    if (body && typeof body.message === 'string') {
      const details = Array.isArray(body.details) ? (body.details as ApiErrorDetail[]) : [];
      return new FledgeApiError(res.status, body.message, details, method, path);
    }
  } catch {
    /* not JSON: fall through to the status line */
  }
  const snippet = text.trim().slice(0, 200);
  return new FledgeApiError(
    res.status,
    `${method} ${path}: HTTP ${res.status} ${res.statusText}${snippet ? `: ${snippet}` : ''}`,
    [],
    method,
    path,
  );
}

// undici hides the useful part ("connect ECONNREFUSED") in `cause`, sometimes inside an
// AggregateError when a name resolves to several addresses.
function connectReason(err: unknown): string {
  const cause = (err as { cause?: unknown } | undefined)?.cause ?? err;
  const first = cause instanceof AggregateError && cause.errors.length > 0 ? (cause.errors[0] as unknown) : cause;
  const e = first as { code?: unknown; syscall?: unknown; message?: unknown } | undefined;
  if (e && typeof e.code === 'string') return typeof e.syscall === 'string' ? `${e.syscall} ${e.code}` : e.code;
  if (e && typeof e.message === 'string' && e.message !== '') return e.message;
  return err instanceof Error ? err.message : String(err);
}

/** Incremental text/event-stream parser (WHATWG rules, minus `retry`). */
export class SseParser {
  #buffer = '';
  #event = '';
  #data: string[] = [];
  #id: string | undefined;

  constructor(private readonly onEvent: (event: FledgeStreamEvent) => void) {}

  push(chunk: string): void {
    this.#buffer += chunk;
    // A trailing \r may be the first half of \r\n, so keep it until more arrives.
    const lines = this.#buffer.split(/\r\n|\n|\r(?=.)/s);
    this.#buffer = lines.pop() ?? '';
    for (const line of lines) this.#line(line);
  }

  end(): void {
    if (this.#buffer !== '') this.#line(this.#buffer.replace(/\r$/, ''));
    this.#buffer = '';
    this.#line('');
  }

  #line(line: string): void {
    if (line === '') return this.#dispatch();
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.#event = value;
    else if (field === 'data') this.#data.push(value);
    else if (field === 'id') this.#id = value;
  }

  #dispatch(): void {
    if (this.#data.length === 0) {
      this.#event = '';
      return;
    }
    const raw = this.#data.join('\n');
    let data: unknown = raw;
    try {
      data = JSON.parse(raw);
    } catch {
      /* keep the text */
    }
    const event: FledgeStreamEvent = { event: this.#event || 'message', data, ...(this.#id !== undefined ? { id: this.#id } : {}) };
    this.#event = '';
    this.#data = [];
    this.onEvent(event);
  }
}
