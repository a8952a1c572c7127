// `http` acceptance check: GET/POST a URL; an expected status (2xx by default) passes, and with
// `jsonPath` only when that field equals the expected value.
import type { AcceptanceCheckSpec } from '../../core/model.ts';
import { substitute } from '../substitute.ts';
import { specCheck } from '../spec-check.ts';
import type { Check, CheckAnswer, CheckContext } from '../types.ts';

export function createHttpCheck(spec: AcceptanceCheckSpec): Check {
  const o = spec.options as { url: string; method?: 'GET' | 'POST'; expectStatus?: number[]; jsonPath?: string; equals?: unknown };
  return specCheck(spec, async (ctx: CheckContext): Promise<CheckAnswer> => {
    const url = substitute(o.url, ctx);
    const res = await fetch(url, { method: o.method ?? 'GET', signal: ctx.signal, redirect: 'follow' });
    const body = await res.text();
    const okStatus = o.expectStatus?.length ? o.expectStatus.includes(res.status) : res.status >= 200 && res.status < 300;
    if (!okStatus) return { state: 'FAILED', message: `${url} answered ${res.status}` };
    if (o.jsonPath === undefined) return { state: 'SUCCEEDED', message: `${url} answered ${res.status}` };
    let value: unknown;
    try {
      value = readPath(JSON.parse(body), o.jsonPath);
    } catch {
      return { state: 'FAILED', message: `${url} did not answer JSON` };
    }
    return JSON.stringify(value) === JSON.stringify(o.equals)
      ? { state: 'SUCCEEDED', message: `${o.jsonPath} is ${JSON.stringify(value)}` }
      : { state: 'FAILED', message: `${o.jsonPath} is ${JSON.stringify(value)}, expected ${JSON.stringify(o.equals)}` };
  });
}

/** Dotted path with numeric indexes: `a.b.0.c`. */
function readPath(value: unknown, path: string): unknown {
  let current = value;
  for (const key of path
    .replace(/^\$\.?/, '')
    .split('.')
    .filter(Boolean)) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}
