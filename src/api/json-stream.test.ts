import { describe, expect, it } from 'vitest';
import { jsonArrayStream, LIST_CHUNK } from './json-stream.ts';

async function read(stream: ReadableStream<Uint8Array>): Promise<{ text: string; chunks: number }> {
  let text = '';
  let chunks = 0;
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    text += decoder.decode(chunk);
    chunks++;
  }
  return { text, chunks };
}

describe('jsonArrayStream', () => {
  it.each([0, 1, LIST_CHUNK, LIST_CHUNK + 1, 2 * LIST_CHUNK + 50])('streams %i items as one JSON array', async (n) => {
    const items = Array.from({ length: n }, (_, i) => i);
    const { text, chunks } = await read(
      jsonArrayStream(
        items,
        async (i) => ({ i }),
        (v) => ({ ...(v as object), seen: true }),
      ),
    );
    expect(JSON.parse(text)).toEqual(items.map((i) => ({ i, seen: true })));
    expect(chunks).toBe(Math.max(1, Math.ceil(n / LIST_CHUNK)));
  });

  it('builds views one at a time and lets other work run between chunks', async () => {
    let inFlight = 0;
    let most = 0;
    const turns: number[] = [];
    // other work: a callback that re-arms itself at every turn of the event loop
    let ticks = 0;
    let stop = false;
    const other = () => {
      ticks++;
      if (!stop) setImmediate(other);
    };
    setImmediate(other);
    const items = Array.from({ length: 3 * LIST_CHUNK }, (_, i) => i);
    try {
      await read(
        jsonArrayStream(items, async (i) => {
          inFlight++;
          most = Math.max(most, inFlight);
          if (i % LIST_CHUNK === 0) turns.push(ticks);
          await Promise.resolve();
          inFlight--;
          return i;
        }),
      );
    } finally {
      stop = true;
    }
    expect(most).toBe(1);
    // the other work ran before the second and the third chunk were built
    expect(turns[1]!).toBeGreaterThan(turns[0]!);
    expect(turns[2]!).toBeGreaterThan(turns[1]!);
  });
});
