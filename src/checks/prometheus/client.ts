// One instant query against Prometheus' HTTP API (POST /api/v1/query), bounded in time and
// size, with errors that say what went wrong: the server down, a refused query, a wrong answer.
import { errorMessage } from '../../core/errors.ts';

/** One query may take this long (Prometheus is told too, so it stops evaluating). */
export const QUERY_TIMEOUT_MS = 10_000;
/** An answer larger than this is not a value a check can use. */
export const MAX_ANSWER_BYTES = 1024 * 1024;

export async function instantQuery(base: string, query: string, signal: AbortSignal): Promise<unknown> {
  const url = new URL('api/v1/query', `${base}/`);
  const timeout = AbortSignal.timeout(QUERY_TIMEOUT_MS);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ query, timeout: `${QUERY_TIMEOUT_MS / 1000}s` }),
      // a redirect could lead past --prometheus-allow
      redirect: 'error',
      signal: AbortSignal.any([signal, timeout]),
    });
  } catch (err) {
    if (timeout.aborted) throw new Error(`Prometheus at ${base} did not answer within ${QUERY_TIMEOUT_MS / 1000} s`, { cause: err });
    throw new Error(`Prometheus at ${base} could not be reached: ${errorMessage(causeOf(err))}`, { cause: err });
  }
  const text = await readBounded(res, base);
  let body: { status?: unknown; data?: unknown; errorType?: unknown; error?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new Error(`Prometheus at ${base} answered ${res.status} without JSON (is it a Prometheus server?)`);
  }
  if (body.status === 'error')
    throw new Error(`Prometheus refused the query (${res.status} ${String(body.errorType)}): ${String(body.error).slice(0, 500)}`);
  if (!res.ok || body.status !== 'success') throw new Error(`Prometheus at ${base} answered ${res.status}`);
  return body.data;
}

async function readBounded(res: Response, base: string): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_ANSWER_BYTES) {
      await reader.cancel();
      throw new Error(`Prometheus at ${base} answered more than ${MAX_ANSWER_BYTES / 1024} KiB; aggregate the query to one series`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** fetch's TypeError says only "fetch failed"; the reason (ECONNREFUSED …) is its cause. */
function causeOf(err: unknown): unknown {
  return err instanceof Error && err.cause !== undefined ? err.cause : err;
}
