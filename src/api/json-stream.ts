// Long lists (GET /api/requests at 10,000 requests is ~17 MB) are answered as a stream: views
// are built a chunk at a time, one after another (not all at once: the store's single
// connection would wake every waiter at each unlock), and the event loop gets a turn between
// chunks, so the list never holds the API, the loop or the in-process balancer. A chunk is
// built only when the client has taken the previous one.
import { setImmediate as yieldToLoop } from 'node:timers/promises';

export const LIST_CHUNK = 100;

/**
 * `prepare` runs once per chunk before its views, so what many views need is read in one
 * query (e.g. the tasks of a chunk's requests) rather than once per item.
 */
export function jsonArrayStream<T, P = undefined>(
  items: readonly T[],
  view: (item: T, prepared: P) => Promise<unknown>,
  transform: (value: unknown) => unknown = (v) => v,
  prepare?: (chunk: readonly T[]) => Promise<P>,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let next = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const start = next;
      if (start > 0) await yieldToLoop();
      const parts: string[] = [];
      const end = Math.min(items.length, start + LIST_CHUNK);
      const prepared = (prepare ? await prepare(items.slice(start, end)) : undefined) as P;
      for (; next < end; next++) parts.push(JSON.stringify(transform(await view(items[next]!, prepared))));
      const text = `${start === 0 ? '[' : ','}${parts.join(',')}`;
      if (next < items.length) return controller.enqueue(encoder.encode(text));
      controller.enqueue(encoder.encode(`${text}]`));
      controller.close();
    },
  });
}
