// One health-check probe: an HTTP request whose outcome, good or bad, becomes a HealthResult.
// Never throws; the pure assessment in core/health.ts decides what a result means.
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import type { HealthResult } from '../../core/model.ts';

/** How much of the body is kept on the task: enough to show why, little enough to store. */
export const BODY_BYTES = 512;
const MAX_REDIRECTS = 20; // as fetch

export async function probeHealth(url: string, method: 'GET' | 'POST', timeoutMs: number, allowInsecure = false): Promise<HealthResult> {
  const timestamp = Date.now();
  const started = performance.now();
  const signal = AbortSignal.timeout(timeoutMs);
  const done = (r: Omit<HealthResult, 'timestamp' | 'durationMillis'>): HealthResult => ({
    timestamp,
    durationMillis: Math.round(performance.now() - started),
    ...r,
  });
  try {
    const { statusCode, body } =
      allowInsecure && url.startsWith('https:') ? await requestInsecure(url, method, signal) : await requestFetch(url, method, signal);
    return done({ statusCode, responseBody: body, startup: false });
  } catch (err) {
    if (signal.aborted) return done({ startup: false, timedOut: true, errorMessage: `No response within ${timeoutMs}ms` });
    if (isConnectionRefused(err)) return done({ startup: true, errorMessage: 'Connection refused' });
    return done({ startup: false, errorMessage: describe(err) });
  }
}

async function requestFetch(url: string, method: string, signal: AbortSignal): Promise<{ statusCode: number; body: string }> {
  const res = await fetch(url, { method, redirect: 'follow', signal });
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (res.body) {
    const reader = res.body.getReader();
    try {
      while (size < BODY_BYTES) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        size += value.byteLength;
      }
    } catch {
      // The status is what counts; a body cut short (e.g. by the timeout) keeps what arrived.
    } finally {
      // Don't download the rest of a large or endless body; this also frees the connection.
      reader.cancel().catch(() => {});
    }
  }
  return { statusCode: res.status, body: decode(chunks) };
}

/** fetch cannot skip certificate checks per request, so self-signed HTTPS goes through node:https. */
function requestInsecure(url: string, method: string, signal: AbortSignal, redirects = 0): Promise<{ statusCode: number; body: string }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const mod = target.protocol === 'https:' ? https : http;
    const req = mod.request(target, { method, signal, rejectUnauthorized: false }, (res) => {
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (status >= 300 && status < 400 && status !== 304 && location) {
        res.resume();
        if (redirects >= MAX_REDIRECTS) return reject(new Error('Too many redirects'));
        // as fetch: 303, and 301/302 after a POST, continue as GET
        const nextMethod = status === 303 || ((status === 301 || status === 302) && method === 'POST') ? 'GET' : method;
        requestInsecure(new URL(location, target).toString(), nextMethod, signal, redirects + 1).then(resolve, reject);
        return;
      }
      const chunks: Uint8Array[] = [];
      let size = 0;
      const finish = () => {
        res.destroy();
        resolve({ statusCode: status, body: decode(chunks) });
      };
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.byteLength;
        if (size >= BODY_BYTES) finish();
      });
      res.on('end', finish);
      res.on('error', finish);
    });
    req.on('error', reject);
    req.end();
  });
}

function decode(chunks: Uint8Array[]): string {
  return Buffer.concat(chunks).subarray(0, BODY_BYTES).toString('utf8');
}

function codes(err: unknown): string[] {
  if (typeof err !== 'object' || err === null) return [];
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown };
  const own = typeof e.code === 'string' ? [e.code] : [];
  // undici wraps the socket error in `cause`; happy-eyeballs connects wrap several in `errors`
  const nested = [e.cause, ...(Array.isArray(e.errors) ? e.errors : [])].flatMap(codes);
  return [...own, ...nested];
}

function isConnectionRefused(err: unknown): boolean {
  return codes(err).includes('ECONNREFUSED');
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // fetch reports "fetch failed"; the cause says what actually went wrong
  const cause = err.cause instanceof Error ? err.cause.message : undefined;
  return cause ? `${err.message}: ${cause}` : err.message;
}
