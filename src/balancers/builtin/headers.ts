// Header rewriting for the reverse proxy.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';

// RFC 9110 §7.6.1: hop-by-hop headers describe one connection and are never forwarded.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
// Answered by this proxy already (Node sends the 100 Continue), so not the upstream's business.
const ANSWERED_HERE = new Set(['expect']);

function withoutHopByHop(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || ANSWERED_HERE.has(name) || named.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** A request body follows when it is chunked or has a non-zero Content-Length. */
export function requestHasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = req.headers['content-length'];
  return length !== undefined && length !== '0';
}

export function upstreamRequestHeaders(req: IncomingMessage): OutgoingHttpHeaders {
  const headers = withoutHopByHop(req.headers);
  // Node hands us the body de-chunked; ask it to re-chunk so the upstream can frame it
  // (it would not do so by itself for GET/DELETE and friends).
  if (req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = 'chunked';
  const client = req.socket.remoteAddress ?? 'unknown';
  const prior = req.headers['x-forwarded-for'];
  headers['x-forwarded-for'] = prior ? `${String(prior)}, ${client}` : client;
  // Keep what an outer proxy already said about the original request; we only speak http.
  const host = req.headers['x-forwarded-host'] ?? req.headers.host;
  if (host !== undefined) headers['x-forwarded-host'] = host;
  headers['x-forwarded-proto'] = req.headers['x-forwarded-proto'] ?? 'http';
  return headers;
}

export function clientResponseHeaders(upstream: IncomingMessage): OutgoingHttpHeaders {
  return withoutHopByHop(upstream.headers);
}
