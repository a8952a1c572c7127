// Header rewriting for the reverse proxy (RFC 9110 §7.6), and the requests it refuses.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { plainAddress, type TrustList } from '../../net/addresses.ts';

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
/**
 * Headers a client may not ask the proxy to drop through `Connection`: without them the
 * upstream would frame the body differently from the proxy (a smuggled second request) or
 * see no Host.
 */
const NEVER_HOP_BY_HOP = new Set(['content-length', 'transfer-encoding', 'host']);
/** What a client says about earlier hops: believed only from a --trust-forwarded-from proxy. */
const FORWARDING = [
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-server',
  'x-real-ip',
  'forwarded',
];

function connectionTokens(headers: IncomingHttpHeaders): Set<string> {
  return new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
  );
}

/** Why the proxy refuses this request (400), or undefined when it may be forwarded. */
export function refusedRequest(req: IncomingMessage): string | undefined {
  const named = [...connectionTokens(req.headers)].filter((t) => NEVER_HOP_BY_HOP.has(t));
  if (named.length > 0) return `the Connection header may not name ${named.join(', ')}`;
  return undefined;
}

function withoutHopByHop(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = connectionTokens(headers);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || ANSWERED_HERE.has(name)) continue;
    if (named.has(name) && !NEVER_HOP_BY_HOP.has(name)) continue;
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

export function upstreamRequestHeaders(req: IncomingMessage, trust: TrustList): OutgoingHttpHeaders {
  const headers = withoutHopByHop(req.headers);
  // Node hands us the body de-chunked; ask it to re-chunk so the upstream can frame it
  // (it would not do so by itself for GET/DELETE and friends).
  if (req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = 'chunked';
  const client = plainAddress(req.socket.remoteAddress ?? 'unknown');
  const trusted = trust.trusts(client);
  const prior = (name: string) => (trusted ? req.headers[name] : undefined);
  if (!trusted) for (const name of FORWARDING) delete headers[name];
  const chain = prior('x-forwarded-for');
  headers['x-forwarded-for'] = chain ? `${String(chain)}, ${client}` : client;
  // A trusted outer proxy knows the original host and scheme; otherwise this hop does.
  const host = prior('x-forwarded-host') ?? req.headers.host;
  if (host !== undefined) headers['x-forwarded-host'] = host;
  else delete headers['x-forwarded-host'];
  headers['x-forwarded-proto'] = prior('x-forwarded-proto') ?? 'http';
  return headers;
}

export function clientResponseHeaders(upstream: IncomingMessage): OutgoingHttpHeaders {
  return withoutHopByHop(upstream.headers);
}
