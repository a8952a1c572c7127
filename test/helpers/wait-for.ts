// Polling instead of sleeping: `waitFor` calls `cond` until it returns something other than
// false/undefined/null (or stops throwing), and returns that value. On timeout the error names
// what was awaited and the last value or error seen, so a failing test says why.

export interface WaitOptions {
  /** give up after this long; default 10 s */
  timeoutMs?: number;
  /** pause between attempts; default 100 ms */
  intervalMs?: number;
  /** what is awaited, for the timeout message */
  message?: string;
}

export class WaitTimeoutError extends Error {
  override name = 'WaitTimeoutError';
}

export async function waitFor<T>(cond: () => T | Promise<T>, options: WaitOptions = {}): Promise<NonNullable<Exclude<T, false>>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await cond();
      if (value !== false && value !== undefined && value !== null) return value as NonNullable<Exclude<T, false>>;
      last = value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const seen = lastError !== undefined ? `last error: ${describe(lastError)}` : `last value: ${describe(last)}`;
      throw new WaitTimeoutError(`timed out after ${timeoutMs} ms waiting for ${options.message ?? 'a condition'} (${seen})`);
    }
    await delay(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}

/** A pause between polls; tests themselves never wait on fixed time. */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describe(value: unknown): string {
  if (value instanceof Error) return value.message;
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text.slice(0, 500);
  } catch {
    return String(value);
  }
}
