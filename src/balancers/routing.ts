/*
 * Routing for testers and sticky cohorts (docs/traffic.md), decided the same way by every
 * balancer; HAProxy's configuration (haproxy/config.ts routingLines) spells out these rules.
 *
 * For a request to a service whose LbService carries routing, in order:
 * 1. a rule matches (the header, or cookie, is present — with the value, when one is given):
 *    the new deploy;
 * 2. the sticky cookie is present: the deploy it names if that is the new one, else the old
 *    one (a client keeps the version it got first; a cookie of an earlier deploy means "old");
 * 3. the sticky header is present: its value's CRC-32 mod 100 below `percent` is the new
 *    deploy, else the old one — the same client id lands on the same side in both balancers,
 *    and across restarts of either, by construction;
 * 4. otherwise the normal split chooses, and with a sticky cookie configured the answer sets
 *    it to the deploy of the upstream that answered.
 * A version with no upstream in rotation falls back to the others: never a 503 for routing.
 * Without routing (the deploy ended: succeeded, failed or cancelled) none of this applies, so
 * pinned clients follow the normal split again from the operation that cleared it.
 */
import { crc32 } from 'node:zlib';
import type { LbRouting } from './types.ts';

export type Version = 'new' | 'old';

export interface RoutingDecision {
  /** the version the request should go to; undefined: the normal split */
  version?: Version;
  /** set the sticky cookie on the answer, naming the deploy of the upstream that answered */
  setCookie: boolean;
}

const NONE: RoutingDecision = { setCookie: false };

/** The request as routing sees it: a header's value (names are case-insensitive) and cookies. */
export interface RoutedRequest {
  header(name: string): string | undefined;
  cookie(name: string): string | undefined;
}

export function decideRouting(routing: LbRouting | undefined, req: RoutedRequest): RoutingDecision {
  if (!routing) return NONE;
  for (const rule of routing.match) {
    const seen = 'header' in rule ? req.header(rule.header) : req.cookie(rule.cookie);
    if (seen !== undefined && (rule.value === undefined || seen === rule.value)) return { version: 'new', setCookie: false };
  }
  const sticky = routing.sticky;
  if (sticky?.cookie !== undefined) {
    const pinned = req.cookie(sticky.cookie);
    if (pinned !== undefined) return { version: pinned === routing.deployId ? 'new' : 'old', setCookie: false };
  }
  if (sticky?.header !== undefined) {
    const id = req.header(sticky.header);
    if (id !== undefined) return { version: cohortOf(id) < (sticky.percent ?? 0) ? 'new' : 'old', setCookie: false };
  }
  return { setCookie: sticky?.cookie !== undefined };
}

/** 0-99: CRC-32 (IEEE, as HAProxy's `crc32` converter) of the value's bytes, mod 100. */
export function cohortOf(value: string): number {
  return crc32(Buffer.from(value, 'latin1')) % 100;
}

/** Whether an upstream of this deploy belongs to the version. */
export function inVersion(routing: LbRouting, version: Version, deployId: string | undefined): boolean {
  return (deployId === routing.deployId) === (version === 'new');
}

/** The Set-Cookie value pinning a client to `deployId` under the service's basePath. */
export function stickyCookie(name: string, deployId: string, basePath: string): string {
  return `${name}=${deployId}; Path=${basePath}; HttpOnly; SameSite=Lax`;
}

/** The first value of each cookie in Cookie header(s). */
export function parseCookies(header: string | string[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (header === undefined) return out;
  for (const line of Array.isArray(header) ? header : [header]) {
    for (const part of line.split(';')) {
      const eq = part.indexOf('=');
      if (eq <= 0) continue;
      const name = part.slice(0, eq).trim();
      if (!out.has(name)) out.set(name, part.slice(eq + 1).trim());
    }
  }
  return out;
}

/** An RFC 7230 token without ' $ % (HAProxy's configuration cannot carry them as written). */
const TOKEN = /^[!#&*+.^_`|~0-9A-Za-z-]{1,64}$/;
const VALUE = /^[A-Za-z0-9._~:@+=/*!^|-]{1,256}$/;

/**
 * Why routing cannot be applied, or undefined: the API validates the same bounds
 * (api/schemas/deploy.ts), a balancer checks again because its configuration carries them.
 */
export function invalidRouting(routing: LbRouting | undefined): string | undefined {
  if (!routing) return undefined;
  if (!/^[A-Za-z0-9_.]{1,50}$/.test(routing.deployId)) return `routing names an invalid deploy id ${JSON.stringify(routing.deployId)}`;
  if (routing.match.length > 16) return 'routing has more than 16 rules';
  for (const rule of routing.match) {
    const name = 'header' in rule ? rule.header : rule.cookie;
    if (!TOKEN.test(name)) return `routing rule names an invalid header or cookie ${JSON.stringify(name)}`;
    if (rule.value !== undefined && !VALUE.test(rule.value)) return `routing rule has an invalid value ${JSON.stringify(rule.value)}`;
  }
  const { cookie, header, percent } = routing.sticky ?? {};
  if (cookie !== undefined && !TOKEN.test(cookie)) return `routing sticky cookie ${JSON.stringify(cookie)} is not a token`;
  if (header !== undefined && !TOKEN.test(header)) return `routing sticky header ${JSON.stringify(header)} is not a token`;
  if (header !== undefined && (percent === undefined || !Number.isInteger(percent) || percent < 0 || percent > 100))
    return 'routing sticky header needs a percent of 0-100';
  return undefined;
}
