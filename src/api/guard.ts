/*
 * The API's front door, one middleware in front of every route (the UI and SSE included):
 *
 * 1. Host: a loopback name, the bind address (any of this machine's addresses for a wildcard
 *    bind), an --allowed-host or --public-url's host; else 421. Stops DNS rebinding: a page
 *    of evil.example that re-resolves to 127.0.0.1 still sends `Host: evil.example`.
 * 2. Origin, when a browser sends one: the server's own, --public-url's or an
 *    --allowed-origin (which also gets CORS answers); else 403. Stops cross-site writes, the
 *    "simple" text/plain POST included, whatever the auth setting.
 * 3. Token: `Authorization: Bearer fl_…`, known to the store by its hash; 401 without a valid
 *    one, 403 naming the role needed when it is too weak (access.ts).
 * 4. A body must be JSON (415 otherwise), read up to --max-body-bytes while it arrives (413).
 * 5. After the route: `read` tokens see deploy env values as `***`; every call that can
 *    change something (access.ts `audit`), refused ones included, goes to the audit log.
 *
 * Steps 1 and 2 come before the token so that a browser page learns nothing from a refusal.
 */
import type { IncomingMessage } from 'node:http';
import { networkInterfaces } from 'node:os';
import type { Context, MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import type { Authenticator, Identity } from '../auth/authenticator.ts';
import { roleAllows } from '../auth/roles.ts';
import { bearerToken } from '../auth/tokens.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../logger.ts';
import { hostnameOf, isLoopbackHost, isWildcardHost, plainAddress, type TrustList } from '../net/addresses.ts';
import type { AuditRecord, Store } from '../store/types.ts';
import { accessOf, isMutating, type Access } from './access.ts';
import { redactSecrets } from './redact.ts';

export interface GuardOptions {
  /** undefined: --no-auth (every caller acts as admin) */
  authenticator: Authenticator | undefined;
  store: Store;
  clock: Clock;
  logger: Logger;
  /** the API's listen address */
  bindHost: string;
  publicUrl?: string;
  allowedHosts: readonly string[];
  allowedOrigins: readonly string[];
  /** proxies whose X-Forwarded-For names the client in the audit log */
  trustForwardedFrom: TrustList;
  maxBodyBytes: number;
}

/** Paths of the API (never the UI's), as in app.ts. */
const API_PATH = /^\/(?:api|metrics|health)(?:\/|$)/;
/** Audit records kept; older ones are pruned (refused calls cost a row each, so this is bounded). */
export const AUDIT_KEEP = 100_000;
const PRUNE_EVERY = 500;
const MAX_FIELD = 200;

/** With --no-auth every caller is this. */
export const ANONYMOUS: Identity = { name: 'anonymous', role: 'admin' };

interface CallState {
  identity?: Identity;
  body: string;
  audit: Partial<Pick<AuditRecord, 'requestId' | 'deployId' | 'taskId'>>;
  /** the handler redacted its answer itself (a streamed one, which must not be read whole here) */
  redacted?: boolean;
}

const calls = new WeakMap<Request, CallState>();

/** The body the guard read (size-limited), '' when there is none. Handlers read bodies here. */
export function requestBody(c: Context): string {
  return calls.get(c.req.raw)?.body ?? '';
}

/** Who is calling (ANONYMOUS with --no-auth); undefined only on public routes without a token. */
export function identityOf(c: Context): Identity | undefined {
  return calls.get(c.req.raw)?.identity;
}

/** Whether the caller may see secrets; when not, the handler now redacts its own (streamed) answer. */
export function redactsItself(c: Context): { redact: boolean } {
  const state = calls.get(c.req.raw);
  if (state) state.redacted = true;
  return { redact: state?.identity?.role === 'read' };
}

/** Adds what only the handler knows (e.g. the id of a deploy it created) to the audit record. */
export function noteAudit(c: Context, fields: CallState['audit']): void {
  const state = calls.get(c.req.raw);
  if (state) Object.assign(state.audit, fields);
}

export function createGuard(o: GuardOptions): MiddlewareHandler {
  const hosts = new HostPolicy(o.bindHost, o.allowedHosts, o.publicUrl);
  const corsOrigins = new Set([...o.allowedOrigins, ...(o.publicUrl ? [new URL(o.publicUrl).origin] : [])]);
  let written = 0;

  const audit = async (record: AuditRecord) => {
    try {
      await o.store.recordAudit(record);
      if (++written % PRUNE_EVERY === 0) await o.store.pruneAudit(AUDIT_KEEP);
    } catch (err) {
      o.logger.error({ err, method: record.method, path: record.path }, 'could not write the audit record');
    }
  };

  return async (c, next) => {
    const method = c.req.method;
    const routeKey = routeKeyOf(c);
    const access = accessOf(routeKey, method);
    const state: CallState = { body: '', audit: {} };
    calls.set(c.req.raw, state);
    const refuse = (status: 401 | 403 | 413 | 415 | 421, message: string, headers: Record<string, string> = {}) =>
      c.json({ message, details: [] }, status, headers);

    const verdict = await (async (): Promise<Response | undefined> => {
      const urlHost = new URL(c.req.url).host;
      // The Node adapter always has a Host header (it refuses requests without); app.request() may not.
      const hostHeader = c.req.header('host') ?? urlHost;
      if (!hosts.allows(hostHeader) || !hosts.allows(urlHost)) {
        return refuse(
          421,
          `Host ${JSON.stringify(hostHeader)} is not a name of this server; call it by a loopback name or its address, or start Fledge with --allowed-host or --public-url`,
        );
      }
      const origin = c.req.header('origin');
      let cors = false;
      if (origin !== undefined) {
        const normalised = originOf(origin);
        cors = normalised !== undefined && corsOrigins.has(normalised);
        if (!cors && !sameOrigin(origin, hostHeader)) {
          return refuse(
            403,
            `Origin ${origin} may not call this API; start Fledge with --allowed-origin ${normalised ?? origin} to let its pages do so`,
          );
        }
        if (cors) {
          c.header('Access-Control-Allow-Origin', normalised);
          c.header('Vary', 'Origin');
          if (method === 'OPTIONS') {
            return c.body(null, 204, {
              'Access-Control-Allow-Methods': 'GET, POST, PUT, DELETE',
              'Access-Control-Allow-Headers': 'Authorization, Content-Type, Accept',
              'Access-Control-Max-Age': '600',
            });
          }
        }
      }

      if (o.authenticator === undefined) state.identity = ANONYMOUS;
      else {
        const token = bearerToken(c.req.header('authorization'));
        // A public route needs no one (and answers while the store is away).
        state.identity = token !== undefined && access.role !== 'public' ? await o.authenticator.identify(token) : undefined;
        if (access.role !== 'public') {
          if (!state.identity) {
            const sent = c.req.header('authorization') !== undefined;
            return refuse(
              401,
              sent
                ? 'The token was not accepted (unknown, revoked or malformed); send Authorization: Bearer <token>'
                : 'This call needs a token: send Authorization: Bearer <token> (make one with `fledge token create`, or use the admin token in admin.token in the data dir)',
              { 'WWW-Authenticate': sent ? 'Bearer realm="fledge", error="invalid_token"' : 'Bearer realm="fledge"' },
            );
          }
        }
      }
      if (access.role !== 'public' && state.identity && !roleAllows(state.identity.role, access.role)) {
        const also = access.role === 'admin' ? '' : ' (or admin)';
        return refuse(
          403,
          `${method} ${c.req.path} needs a token with role ${access.role}${also}; token ${state.identity.name} has role ${state.identity.role}`,
        );
      }

      if (isMutating(method)) {
        const type = c.req.header('content-type') ?? '';
        const json = /^application\/json\s*(;|$)/i.test(type);
        const notJson = () =>
          refuse(415, `A request body must be sent as Content-Type: application/json (got ${type === '' ? 'none' : JSON.stringify(type)})`);
        if (!json && declaresBody(c.req.raw)) return notJson();
        const body = await readLimited(c.req.raw, o.maxBodyBytes);
        if (body === undefined) {
          lingerThenClose(c);
          return refuse(413, `The request body is larger than ${o.maxBodyBytes} bytes (--max-body-bytes)`);
        }
        // No framing header but bytes after all (in-process requests): the same rule.
        if (!json && body !== '') return notJson();
        state.body = body;
      }
      return undefined;
    })();

    if (verdict) c.res = verdict;
    else {
      await next();
      if (state.identity?.role === 'read' && !state.redacted && isJson(c.res)) await redactResponse(c);
    }
    securityHeaders(c);

    if (access.audit && isMutating(method)) {
      const ids = { ...idsOf(c, routeKey, state.body), ...state.audit };
      if (ids.taskId !== undefined && ids.requestId === undefined && !verdict) {
        ids.requestId = (await o.store.getTask(ids.taskId).catch(() => undefined))?.taskId.requestId;
      }
      await audit({
        at: o.clock.now(),
        ...(state.identity ? { tokenName: state.identity.name, role: state.identity.role } : {}),
        method,
        path: clip(c.req.path, 500),
        ...compactIds(ids),
        source: clip(clientAddress(c, o.trustForwardedFrom), MAX_FIELD),
        status: c.res.status,
      });
    }
  };
}

/** `METHOD /pattern` of the route that will answer; undefined when none will (a 404). */
function routeKeyOf(c: Context): string | undefined {
  const routes = matchedRoutes(c).filter((r) => r.method !== 'ALL');
  const route = routes[0];
  if (!route) return undefined;
  // The UI's catch-all also matches API paths nothing serves: those are 404s, not the UI.
  if (route.path === '/*' && API_PATH.test(c.req.path)) return undefined;
  return `${route.method} ${route.path}`;
}

class HostPolicy {
  readonly #names: Set<string>;
  readonly #wildcard: boolean;
  #local: { at: number; names: Set<string> } | undefined;

  constructor(bindHost: string, allowed: readonly string[], publicUrl: string | undefined) {
    this.#wildcard = isWildcardHost(bindHost);
    this.#names = new Set([hostnameOf(bindHost), ...allowed.map((h) => h.toLowerCase())]);
    if (publicUrl) this.#names.add(hostnameOf(new URL(publicUrl).host));
  }

  allows(hostHeader: string): boolean {
    const name = hostnameOf(hostHeader);
    if (name === '') return false;
    if (isLoopbackHost(name) || this.#names.has(name)) return true;
    return this.#wildcard && this.#localAddresses().has(name);
  }

  /** This machine's addresses, for a wildcard bind (re-read now and then: DHCP, VPNs...). */
  #localAddresses(): Set<string> {
    const now = Date.now();
    if (!this.#local || now - this.#local.at > 10_000) {
      const names = new Set<string>();
      for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) names.add(a.address.toLowerCase());
      this.#local = { at: now, names };
    }
    return this.#local.names;
  }
}

function originOf(origin: string): string | undefined {
  try {
    const url = new URL(origin);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

/** The page's origin is this server as the browser reached it (scheme aside: TLS proxies). */
function sameOrigin(origin: string, hostHeader: string): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  const defaultPort = url.protocol === 'https:' ? '443' : '80';
  const originPort = url.port || defaultPort;
  const name = hostnameOf(hostHeader);
  const portMatch = /:(\d+)$/.exec(hostHeader.trim().replace(/^\[[^\]]*\]/, ''));
  const hostPort = portMatch?.[1] ?? defaultPort;
  return hostnameOf(url.host) === name && originPort === hostPort;
}

/** Content-Length above 0 or chunked: a body follows. */
function declaresBody(req: Request): boolean {
  const length = req.headers.get('content-length');
  if (req.headers.get('transfer-encoding') !== null) return true;
  return length !== null && length.trim() !== '0';
}

/** The body as text, or undefined once it is longer than `limit` (reading stops there). */
async function readLimited(req: Request, limit: number): Promise<string | undefined> {
  const declared = Number(req.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) return undefined;
  if (!req.body) return '';
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      // Not cancel(): that destroys the socket before the 413 is written. The rest is
      // discarded by Node once the answer is sent (lingerThenClose bounds how long).
      reader.releaseLock();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * After a 413 the client may still be sending: Node discards the rest of the body once the
 * answer is written, so the client reads the 413 instead of a reset (closing at once would
 * drop it). A client that keeps sending is cut off after LINGER_MS.
 */
function lingerThenClose(c: Context): void {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (!incoming) return;
  const cut = setTimeout(() => incoming.socket?.destroy(), LINGER_MS);
  cut.unref();
  incoming.once('end', () => clearTimeout(cut));
  incoming.once('close', () => clearTimeout(cut));
}

const LINGER_MS = 5_000;

function isJson(res: Response): boolean {
  return /^application\/json/i.test(res.headers.get('content-type') ?? '');
}

async function redactResponse(c: Context): Promise<void> {
  const { status } = c.res;
  const headers = new Headers(c.res.headers);
  headers.delete('content-length');
  const text = JSON.stringify(redactSecrets(await c.res.json()));
  c.res = undefined;
  c.res = new Response(text, { status, headers });
}

const UI_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "object-src 'none'",
].join('; ');

function securityHeaders(c: Context): void {
  const h = c.res.headers;
  h.set('X-Content-Type-Options', 'nosniff');
  h.set('Referrer-Policy', 'no-referrer');
  h.set('X-Frame-Options', 'DENY');
  if (API_PATH.test(c.req.path)) {
    if (!h.has('Cache-Control')) h.set('Cache-Control', 'no-store');
  } else h.set('Content-Security-Policy', UI_POLICY);
}

/** The request, deploy and task a call is about: route parameters, then the body's fields. */
function idsOf(c: Context, routeKey: string | undefined, body: string): CallState['audit'] {
  const pattern = routeKey ? routeKey.slice(routeKey.indexOf(' ') + 1) : '';
  const params = routeKey ? paramsOf(pattern, c.req.path) : {};
  let parsed: Record<string, unknown> = {};
  if (body !== '') {
    try {
      const value = JSON.parse(body) as unknown;
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) parsed = value as Record<string, unknown>;
    } catch {
      // not JSON: the handler answers 400, the audit record has no ids from the body
    }
  }
  const deploy = parsed.deploy !== null && typeof parsed.deploy === 'object' ? (parsed.deploy as Record<string, unknown>) : {};
  const str = (v: unknown) => (typeof v === 'string' ? clip(v, MAX_FIELD) : undefined);
  return {
    requestId:
      // `:id` is a request's only under /request/ (a host's elsewhere)
      (pattern.includes('/request/:id') ? str(params.id) : undefined) ??
      str(params.requestId) ??
      str(parsed.requestId) ??
      str(deploy.requestId) ??
      (routeKey === 'POST /api/requests' ? str(parsed.id) : undefined),
    deployId: str(params.deployId) ?? str(parsed.deployId) ?? str(deploy.id),
    taskId: str(params.taskId),
  };
}

/** `:name` segments of a route pattern, read from a path it matched. */
function paramsOf(pattern: string, path: string): Record<string, string> {
  const names = pattern.split('/');
  const values = path.split('/');
  const out: Record<string, string> = {};
  names.forEach((segment, i) => {
    if (!segment.startsWith(':')) return;
    try {
      out[segment.slice(1)] = decodeURIComponent(values[i] ?? '');
    } catch {
      out[segment.slice(1)] = values[i] ?? '';
    }
  });
  return out;
}

function compactIds(ids: CallState['audit']): CallState['audit'] {
  return Object.fromEntries(Object.entries(ids).filter(([, v]) => v !== undefined));
}

/** The client's address; behind a trusted proxy, the last untrusted hop of X-Forwarded-For. */
function clientAddress(c: Context, trust: TrustList): string {
  const peerRaw = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket?.remoteAddress;
  if (!peerRaw) return 'unknown';
  const peer = plainAddress(peerRaw);
  if (!trust.trusts(peer)) return peer;
  const hops = (c.req.header('x-forwarded-for') ?? '')
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i] as string;
    if (!trust.trusts(hop)) return `${hop} via ${peer}`;
  }
  return hops.length > 0 ? `${hops[0]} via ${peer}` : peer;
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

export type { Access };
