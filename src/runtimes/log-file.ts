// Reading a task's stdout/stderr file by byte offset: the LogChunk every runtime answers with.
import { open } from 'node:fs/promises';
import type { LogChunk } from './types.ts';

/** Up to `length` bytes of `file` from `offset`, never ending inside a UTF-8 character. */
export async function readLogChunk(file: string, offset: number, length: number): Promise<LogChunk> {
  const start = Math.max(0, Math.floor(offset));
  let fh;
  try {
    fh = await open(file, 'r');
  } catch {
    return { path: file, offset: start, data: '', nextOffset: start };
  }
  try {
    const size = (await fh.stat()).size;
    const available = Math.max(0, size - start);
    const buffer = Buffer.alloc(Math.min(available, Math.max(0, Math.floor(length))));
    const { bytesRead } = await fh.read(buffer, 0, buffer.length, start);
    // Never split a UTF-8 character: stop before an incomplete one, the next read gets it.
    const usable = completeUtf8Length(buffer.subarray(0, bytesRead));
    return { path: file, offset: start, data: buffer.toString('utf8', 0, usable), nextOffset: start + usable, size };
  } finally {
    await fh.close();
  }
}

/** Length of the longest prefix of buf that does not end inside a UTF-8 sequence. */
export function completeUtf8Length(buf: Buffer): number {
  const n = buf.length;
  // A sequence is at most 4 bytes: look back at most 3 for its lead byte.
  for (let back = 1; back <= Math.min(3, n); back++) {
    const byte = buf[n - back] as number;
    if ((byte & 0xc0) === 0x80) continue; // continuation byte
    const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}
