// SQLite allows one writer per file. While another process holds the write lock (a backup, a
// `sqlite3` shell with BEGIN IMMEDIATE), better-sqlite3 waits synchronously for busy_timeout —
// and a synchronous wait stops everything in this process, the in-process load balancer and
// the health probes included. So the file is opened with a busy timeout of a few milliseconds,
// and an operation that finds the file busy is tried again asynchronously (the event loop runs
// meanwhile), backing off, for a bounded while; then it fails with StoreUnavailableError, which
// the loop and the executor retry later and the API answers 503 with Retry-After. Every change
// set is one transaction, so a failed write changed nothing.
import { StoreUnavailableError, type Store } from '../types.ts';

/** What one attempt may block the process for (the busy_timeout pragma). */
export const BUSY_TIMEOUT_MS = 10;
const FIRST_RETRY_MS = 10;
const MAX_RETRY_MS = 200;

/** Store operations that write (the rest read, or — locked, close — are not operations on the file). */
const WRITES: ReadonlySet<string> = new Set([
  'migrate',
  'apply',
  'createToken',
  'revokeToken',
  'touchToken',
  'recordAudit',
  'pruneAudit',
  'putHost',
  'ensureMeta',
]);
const PASS_THROUGH: ReadonlySet<string> = new Set(['locked', 'close']);

/** SQLITE_BUSY and its extended codes (SQLITE_BUSY_SNAPSHOT, …), SQLITE_LOCKED: another connection has the file. */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

/** `fn`, tried again while the file is busy, for up to `budgetMs`; then StoreUnavailableError. */
export async function whileBusy<T>(what: string, budgetMs: number, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + budgetMs;
  for (let delay = FIRST_RETRY_MS; ; delay = Math.min(MAX_RETRY_MS, delay * 2)) {
    try {
      return await fn();
    } catch (err) {
      if (!isBusy(err)) throw err;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new StoreUnavailableError(`The store is busy: another process holds the SQLite file's lock (${what})`, { cause: err });
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, left)));
    }
  }
}

/**
 * The store with every operation waiting out a busy file asynchronously (see the header). Once
 * a write gave up, later writes try once and give up at once until one goes through: callers
 * hold a request's lock while they write, and waiting out the budget each, one after another,
 * would hold up the next writer (an API call) for seconds before its 503.
 */
export function retryWhileBusy<S extends Store>(store: S, budgetMs: number): S {
  let writesUnavailable = false;
  /** per method: the function wrapped, and its wrapper (a method replaced later, e.g. by a test's spy, is wrapped anew) */
  const wrapped = new Map<string, { of: unknown; fn: unknown }>();
  const wrap = (name: string, fn: (...args: unknown[]) => Promise<unknown>) => {
    if (!WRITES.has(name)) return (...args: unknown[]) => whileBusy(name, budgetMs, () => fn(...args));
    return async (...args: unknown[]) => {
      try {
        const result = await whileBusy(name === 'apply' ? 'write' : name, writesUnavailable ? 0 : budgetMs, () => fn(...args));
        writesUnavailable = false;
        return result;
      } catch (err) {
        if (err instanceof StoreUnavailableError) writesUnavailable = true;
        throw err;
      }
    };
  };
  return new Proxy(store, {
    get(target, prop) {
      // The target as receiver: its getters and methods use private fields, which a proxy lacks.
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string' || PASS_THROUGH.has(prop)) {
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      }
      const known = wrapped.get(prop);
      if (known?.of === value) return known.fn;
      const fn = wrap(prop, (value as (...a: unknown[]) => Promise<unknown>).bind(target));
      wrapped.set(prop, { of: value, fn });
      return fn;
    },
  });
}
