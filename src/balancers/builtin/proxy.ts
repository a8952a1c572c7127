// Forwarding one client request (or upgrade tunnel) to the upstreams of its service.
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../logger.ts';
import type { TrustList } from '../../net/addresses.ts';
import { decideRouting, parseCookies, stickyCookie, type RoutingDecision, type Version } from '../routing.ts';
import type { LbRouting, Upstream } from '../types.ts';
import { clientResponseHeaders, refusedRequest, requestHasBody, upstreamRequestHeaders } from './headers.ts';
import { requestPath } from './route-table.ts';

/** One exchange with one upstream, counted in flight until it ends. */
export interface Attempt {
  /** abort the exchange now (the upstream's drain timed out) */
  cut(): void;
}

export interface UpstreamTarget {
  readonly upstream: Upstream;
  /** keep-alive pool to this upstream */
  readonly agent: http.Agent;
}

export interface ServiceRoute {
  readonly serviceId: string;
  readonly basePath: string;
  /** the service's routing for testers and cohorts, while a deploy with routing is pending */
  readonly routing: LbRouting | undefined;
  /**
   * The next upstream in rotation not in `exclude` — of `version` when it has one in rotation
   * (routing.ts), else of any; the attempt counts as in flight on it.
   */
  begin(exclude: ReadonlySet<UpstreamTarget>, attempt: Attempt, version?: Version): UpstreamTarget | undefined;
  /** The attempt is over (idempotent). */
  end(target: UpstreamTarget, attempt: Attempt): void;
  /**
   * How the exchange with the upstream went, for passive protection: `ok` once its response
   * began, or the failure (refused, reset, timed out) that counts toward taking it out of rotation.
   */
  report(target: UpstreamTarget, outcome: 'ok' | { failure: string }): void;
}

export interface ProxyContext {
  route(path: string): ServiceRoute | undefined;
  connectTimeoutMs: number;
  /** an upstream silent this long (before or during its response) fails the attempt */
  upstreamTimeoutMs: number;
  /** proxies whose X-Forwarded-* headers are kept */
  trust: TrustList;
  logger: Logger;
  /** told once per answered request (traffic counters): its final upstream, status and time */
  observe?(answer: ProxyAnswer): void;
}

export interface ProxyAnswer {
  serviceId: string;
  upstream: Upstream;
  status: number;
  latencyMs: number;
  /** the proxy answered (or cut the answer) because the upstream failed */
  upstreamError: boolean;
}

/*
 * When a request is sent again to another upstream (never to the same one):
 * - the connection failed (refused, or not made within connectTimeoutMs): nothing of the request
 *   was written, so whatever its method it moves over intact (a body is read only once
 *   connected), to up to MAX_UNSENT_RETRIES others — when a host dies, all of its tasks refuse
 *   at once, and the next in line is often one of them;
 * - an idempotent method (RFC 9110 §9.2.2) whose body, if any, was not sent, and nothing of the
 *   response arrived: the connection was reset, or the upstream stayed silent past
 *   upstreamTimeoutMs (a frozen task). Repeating it is harmless by the method's definition, but
 *   it is repeated once only: a second upstream that may have seen it and failed ends it.
 * Never once any of the response arrived, never a request whose body was sent, and never a
 * non-idempotent request the upstream may have seen: those end 502 (reset) or 504 (timeout).
 * A keep-alive socket the upstream closed just as it was reused is not the upstream's failure:
 * that attempt is repeated on a fresh connection to the same upstream.
 */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
const MAX_SEEN_RETRIES = 1;
const MAX_UNSENT_RETRIES = 3;
/** A reused keep-alive socket may have been closed by the upstream just now: allow a fresh try. */
const MAX_STALE_SOCKET_RETRIES = 2;

/** One request's retries elsewhere: true (and counted) when one more is allowed. */
function retryBudget(): (unsent: boolean) => boolean {
  let seen = 0;
  let unsent = 0;
  return (nothingSent) => {
    if (nothingSent ? unsent >= MAX_UNSENT_RETRIES : seen >= MAX_SEEN_RETRIES) return false;
    if (nothingSent) unsent += 1;
    else seen += 1;
    return true;
  };
}

export function proxyRequest(ctx: ProxyContext, req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = requestPath(req.url);
  const route = ctx.route(path);
  // Client-side stream errors surface as res 'close'; never let them go unhandled.
  req.on('error', () => {});
  res.on('error', () => {});
  const refused = refusedRequest(req);
  if (refused) {
    // The connection's framing is in doubt: answer and close it, read nothing more from it.
    res.shouldKeepAlive = false;
    reply(res, 400, { error: `bad request: ${refused}` });
    return;
  }
  if (!route) {
    reply(res, 503, { error: 'no service is routed at this path', path });
    return;
  }
  const { serviceId } = route;
  const routing = route.routing;
  const decision = routingDecision(routing, req);
  const started = performance.now();
  // The upstream that answers (or failed to): what the traffic counters record.
  let answer: { upstream: Upstream; fromUpstream: boolean } | undefined;
  if (ctx.observe) {
    const observe = ctx.observe;
    res.once('close', () => {
      if (!answer || !res.headersSent) return;
      observe({
        serviceId,
        upstream: answer.upstream,
        status: res.statusCode,
        latencyMs: performance.now() - started,
        upstreamError: !answer.fromUpstream,
      });
    });
  }
  const method = req.method ?? 'GET';
  const hasBody = requestHasBody(req);
  const headers = upstreamRequestHeaders(req, ctx.trust);
  const target = forwardTarget(req.url);
  const tried = new Set<UpstreamTarget>();
  let staleRetries = 0;
  const mayRetry = retryBudget();
  let lastError = '';
  let lastTimedOut = false;
  let clientGone = false;
  let abortCurrent: (() => void) | undefined;

  res.on('close', () => {
    if (res.writableFinished) return;
    clientGone = true;
    abortCurrent?.();
  });
  // A body we will not forward must not stall the connection.
  if (!hasBody) req.resume();

  const attempt = (): void => {
    if (clientGone) return;
    let connected = false;
    let bodyStarted = false;
    let responded = false;
    let stop: 'cut' | 'timeout' | undefined;
    let connectTimer: NodeJS.Timeout | undefined;
    // eslint-disable-next-line prefer-const -- assigned once the target is known
    let upstreamReq: http.ClientRequest | undefined;
    const self: Attempt = {
      cut: () => {
        stop = 'cut';
        upstreamReq?.destroy(new Error('upstream removed: drain timed out'));
      },
    };
    const chosen = route.begin(tried, self, decision.version);
    if (!chosen) {
      if (tried.size === 0) reply(res, 503, { error: 'service has no upstream in rotation', service: serviceId });
      else if (lastTimedOut) reply(res, 504, { error: 'upstream timed out', service: serviceId, cause: lastError });
      else reply(res, 502, { error: 'no upstream of the service could be reached', service: serviceId, cause: lastError });
      return;
    }
    tried.add(chosen);
    answer = { upstream: chosen.upstream, fromUpstream: false };
    const done = () => {
      clearTimeout(connectTimer);
      route.end(chosen, self);
    };

    const { host, port, taskId } = chosen.upstream;
    const up = http.request({ host, port, method, path: target, headers, agent: chosen.agent });
    upstreamReq = up;
    abortCurrent = () => up.destroy();
    const startBody = () => {
      connected = true;
      clearTimeout(connectTimer);
      if (!hasBody) return;
      // Only now is the body consumed, so a refused connection can still be retried elsewhere.
      bodyStarted = true;
      req.pipe(up);
    };
    up.on('socket', (socket) => {
      if (!socket.connecting) return startBody();
      connectTimer = setTimeout(() => up.destroy(new Error(`connect timed out after ${ctx.connectTimeoutMs} ms`)), ctx.connectTimeoutMs);
      socket.once('connect', startBody);
    });
    if (!hasBody) up.end();
    up.setTimeout(ctx.upstreamTimeoutMs, () => {
      stop = 'timeout';
      up.destroy(new Error(`upstream sent nothing for ${ctx.upstreamTimeoutMs} ms`));
    });

    up.on('response', (upstreamRes) => {
      responded = true;
      route.report(chosen, 'ok');
      if (clientGone) {
        up.destroy();
        return;
      }
      const answered = { upstream: chosen.upstream, fromUpstream: true };
      answer = answered;
      upstreamRes.once('aborted', () => (answered.fromUpstream = false));
      const headers = clientResponseHeaders(upstreamRes);
      const pinTo = chosen.upstream.deployId;
      if (decision.setCookie && routing?.sticky?.cookie !== undefined && pinTo !== undefined) {
        // Appended to the upstream's own cookies: the client keeps this version for the deploy.
        const own = headers['set-cookie'];
        const pin = stickyCookie(routing.sticky.cookie, pinTo, route.basePath);
        headers['set-cookie'] = own === undefined ? [pin] : [...(Array.isArray(own) ? own : [String(own)]), pin];
      }
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, headers);
      upstreamRes.pipe(res);
      // The upstream died mid-response: the client must see a broken response, not a short one.
      upstreamRes.on('aborted', () => res.destroy());
      upstreamRes.on('error', () => res.destroy());
      upstreamRes.on('end', done);
    });

    up.on('error', (err) => {
      done();
      lastError = err.message;
      lastTimedOut = stop === 'timeout';
      const stale = up.reusedSocket && !responded && stop === undefined && staleRetries < MAX_STALE_SOCKET_RETRIES;
      // A failure of the upstream itself (not of a stale pooled socket, not a drain cut) counts
      // toward taking it out of rotation — also when the client is gone or the response broke.
      if (stop !== 'cut' && !stale) route.report(chosen, { failure: stop === 'timeout' ? 'timeout' : failureOf(err) });
      if (clientGone) return;
      if (responded) {
        res.destroy();
        return;
      }
      if (stop === 'cut') {
        reply(res, 502, { error: 'upstream was removed and its drain timed out', service: serviceId });
        return;
      }
      // Safe to send elsewhere: nothing of the body is gone, and either the upstream never got
      // the request (no connection) or repeating it is harmless (idempotent, nothing received).
      const safe = !bodyStarted && (!connected || IDEMPOTENT.has(method));
      ctx.logger.debug({ serviceId, taskId, err: err.message, retry: safe }, 'upstream request failed');
      if (stale && safe) {
        // Likely a keep-alive socket the upstream had just closed; the upstream itself may be fine.
        staleRetries += 1;
        tried.delete(chosen);
        attempt();
        return;
      }
      if (safe && mayRetry(!connected)) {
        attempt();
        return;
      }
      if (stop === 'timeout') {
        reply(res, 504, { error: 'upstream timed out', service: serviceId, upstream: taskId });
        return;
      }
      reply(res, 502, { error: 'upstream request failed', service: serviceId, upstream: taskId, cause: err.message });
    });
    up.on('close', done);
  };
  attempt();
}

/**
 * An Upgrade request (WebSocket and friends): once the upstream agrees, bytes are piped both
 * ways. The tunnel counts as in flight until either side closes, so draining waits for it.
 */
export function proxyUpgrade(ctx: ProxyContext, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => {});
  const path = requestPath(req.url);
  const route = ctx.route(path);
  const refused = refusedRequest(req);
  if (refused) {
    rawReply(socket, 400, { error: `bad request: ${refused}` });
    return;
  }
  if (!route) {
    rawReply(socket, 503, { error: 'no service is routed at this path', path });
    return;
  }
  const { serviceId } = route;
  const decision = routingDecision(route.routing, req);
  const headers = upstreamRequestHeaders(req, ctx.trust);
  headers.connection = 'upgrade';
  if (req.headers.upgrade !== undefined) headers.upgrade = req.headers.upgrade;
  const method = req.method ?? 'GET';
  const target = forwardTarget(req.url);
  const tried = new Set<UpstreamTarget>();
  let lastError = '';
  const mayRetry = retryBudget();
  let clientGone = false;
  let abortCurrent: (() => void) | undefined;
  socket.on('close', () => {
    clientGone = true;
    abortCurrent?.();
  });

  const attempt = (): void => {
    if (clientGone) return;
    let connected = false;
    let stop: 'cut' | undefined;
    let connectTimer: NodeJS.Timeout | undefined;
    let tunnel: Duplex | undefined;
    // eslint-disable-next-line prefer-const -- assigned once the target is known
    let upstreamReq: http.ClientRequest | undefined;
    const self: Attempt = {
      cut: () => {
        stop = 'cut';
        upstreamReq?.destroy();
        tunnel?.destroy();
        socket.destroy();
      },
    };
    const chosen = route.begin(tried, self, decision.version);
    if (!chosen) {
      if (tried.size === 0) rawReply(socket, 503, { error: 'service has no upstream in rotation', service: serviceId });
      else rawReply(socket, 502, { error: 'no upstream of the service could be reached', service: serviceId, cause: lastError });
      return;
    }
    tried.add(chosen);
    const done = () => {
      clearTimeout(connectTimer);
      route.end(chosen, self);
    };
    const { host, port } = chosen.upstream;
    // The socket leaves HTTP for good, so it is not taken from (or returned to) the pool.
    const up = http.request({ host, port, method, path: target, headers, agent: false });
    upstreamReq = up;
    abortCurrent = () => {
      up.destroy();
      tunnel?.destroy();
    };
    up.on('socket', (s) => {
      connectTimer = setTimeout(() => up.destroy(new Error(`connect timed out after ${ctx.connectTimeoutMs} ms`)), ctx.connectTimeoutMs);
      s.once('connect', () => {
        connected = true;
        clearTimeout(connectTimer);
      });
    });
    up.end();

    up.on('upgrade', (upstreamRes, upstreamSocket, upstreamHead) => {
      tunnel = upstreamSocket;
      route.report(chosen, 'ok');
      upstreamSocket.on('error', () => {});
      if (clientGone) {
        upstreamSocket.destroy();
        done();
        return;
      }
      socket.write(rawHead(upstreamRes.statusCode ?? 101, upstreamRes.statusMessage, upstreamRes.rawHeaders));
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      upstreamSocket.pipe(socket);
      socket.pipe(upstreamSocket);
      upstreamSocket.on('close', () => {
        socket.destroy();
        done();
      });
      socket.on('close', () => upstreamSocket.destroy());
    });

    // The upstream declined the upgrade: relay its answer and close.
    up.on('response', (upstreamRes) => {
      route.report(chosen, 'ok');
      const names = new Set(['connection', 'transfer-encoding', 'keep-alive']);
      const raw: string[] = [];
      for (let i = 0; i + 1 < upstreamRes.rawHeaders.length; i += 2) {
        const name = upstreamRes.rawHeaders[i] ?? '';
        if (!names.has(name.toLowerCase())) raw.push(name, upstreamRes.rawHeaders[i + 1] ?? '');
      }
      raw.push('Connection', 'close');
      socket.write(rawHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, raw));
      upstreamRes.pipe(socket);
      upstreamRes.on('error', () => socket.destroy());
      upstreamRes.on('end', done);
    });

    up.on('error', (err) => {
      done();
      lastError = err.message;
      if (stop !== 'cut' && !tunnel) route.report(chosen, { failure: failureOf(err) });
      if (clientGone || tunnel) return;
      if (stop === 'cut') {
        rawReply(socket, 502, { error: 'upstream was removed and its drain timed out', service: serviceId });
        return;
      }
      // Nothing but the handshake was sent; it is a GET in practice, so another upstream may try.
      if ((!connected || IDEMPOTENT.has(method)) && mayRetry(!connected)) {
        attempt();
        return;
      }
      rawReply(socket, 502, { error: 'upstream request failed', service: serviceId, cause: err.message });
    });
    up.on('close', () => {
      if (!tunnel) done();
    });
  };
  attempt();
}

/** The version a request goes to (routing.ts), read from its headers and cookies. */
function routingDecision(routing: LbRouting | undefined, req: http.IncomingMessage): RoutingDecision {
  if (!routing) return { setCookie: false };
  let cookies: Map<string, string> | undefined;
  return decideRouting(routing, {
    header: (name) => {
      const v = req.headers[name.toLowerCase()];
      return Array.isArray(v) ? v.join(', ') : v;
    },
    cookie: (name) => (cookies ??= parseCookies(req.headers.cookie)).get(name),
  });
}

/** What went wrong with an upstream, in a word: "refused", "reset", "connect timeout", or the code. */
function failureOf(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ECONNRESET' || code === 'EPIPE' || err.message === 'socket hang up') return 'reset';
  if (/connect timed out/.test(err.message)) return 'connect timeout';
  return code ?? err.message;
}

/** The path is forwarded unchanged; an absolute-form target is reduced to path and query. */
function forwardTarget(url: string | undefined): string {
  if (!url) return '/';
  if (url.startsWith('/')) return url;
  try {
    const parsed = new URL(url);
    return `${parsed.pathname}${parsed.search}`;
  } catch {
    return '/';
  }
}

function reply(res: http.ServerResponse, status: number, body: Record<string, unknown>): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function rawHead(status: number, message: string | undefined, rawHeaders: string[]): string {
  let head = `HTTP/1.1 ${status} ${message || http.STATUS_CODES[status] || ''}\r\n`;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) head += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/** An answer on a socket that left the HTTP server (upgrade requests). */
function rawReply(socket: Duplex, status: number, body: Record<string, unknown>): void {
  if (socket.destroyed) return;
  const text = `${JSON.stringify(body)}\n`;
  const headers = [
    'Content-Type',
    'application/json; charset=utf-8',
    'Content-Length',
    String(Buffer.byteLength(text)),
    'Connection',
    'close',
  ];
  socket.end(rawHead(status, undefined, headers) + text);
}
