// The UI's one API client: the same typed FledgeClient the CLI uses, on this page's origin,
// sending this page's token (auth.ts).
import { FledgeApiError, FledgeClient, FledgeConnectionError, type TaskView } from '../api/client.ts';
import { authedFetch } from './auth.ts';

export const client = new FledgeClient(window.location.origin, { fetch: authedFetch });

/** Finished tasks of a request (the client has no method for this history call). */
export async function requestTaskHistory(requestId: string): Promise<TaskView[]> {
  const res = await authedFetch(`/api/history/request/${encodeURIComponent(requestId)}/tasks`, {
    headers: { Accept: 'application/json' },
  }).catch((err: unknown) => {
    throw new FledgeConnectionError(window.location.origin, err instanceof Error ? err.message : String(err));
  });
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { message?: string };
    throw new FledgeApiError(res.status, body.message ?? `HTTP ${res.status}`);
  }
  return (await res.json()) as TaskView[];
}

export function isNotFound(err: unknown): boolean {
  return err instanceof FledgeApiError && err.status === 404;
}

export function isConnectionError(err: unknown): boolean {
  return err instanceof FledgeConnectionError;
}

/** One line for an error from the API (status, message and the fields it names). */
export function describeError(err: unknown): { title: string; details: string[] } {
  if (err instanceof FledgeApiError) {
    const details = err.details
      .map((d) => [d.field, d.rule ?? d.message].filter(Boolean).join(': '))
      .filter((line) => line !== '' && !err.message.includes(line));
    return { title: `${err.status} — ${err.message}`, details };
  }
  if (err instanceof FledgeConnectionError) return { title: 'Fledge is not reachable', details: [err.reason] };
  return { title: err instanceof Error ? err.message : String(err), details: [] };
}
