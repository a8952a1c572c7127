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
 * A Store whose every operation waits out a busy file asynchronously (see the header). Once a
 * write gave up, later writes try once and give up at once until one goes through: callers
 * hold a request's lock while they write, and waiting out the budget each, one after another,
 * would hold up the next writer (an API call) for seconds before its 503.
 */
export function retryWhileBusy(store: Store, budgetMs: number): Store {
  const run = <T>(what: string, fn: () => Promise<T>) => whileBusy(what, budgetMs, fn);
  let writesUnavailable = false;
  const write = async (what: string, fn: () => Promise<void>) => {
    try {
      await whileBusy(what, writesUnavailable ? 0 : budgetMs, fn);
      writesUnavailable = false;
    } catch (err) {
      if (err instanceof StoreUnavailableError) writesUnavailable = true;
      throw err;
    }
  };
  return {
    migrate: () => run('migrate', () => store.migrate()),
    apply: (changes) => write('write', () => store.apply(changes)),
    getRequest: (id) => run('read a request', () => store.getRequest(id)),
    listRequests: () => run('list requests', () => store.listRequests()),
    getDeploy: (requestId, deployId) => run('read a deploy', () => store.getDeploy(requestId, deployId)),
    listDeployHistory: (requestId) => run('read deploy history', () => store.listDeployHistory(requestId)),
    getDeployHistory: (requestId, deployId) => run('read deploy history', () => store.getDeployHistory(requestId, deployId)),
    getPending: (requestId) => run('read a pending deploy', () => store.getPending(requestId)),
    listPending: () => run('list pending deploys', () => store.listPending()),
    getTask: (taskId) => run('read a task', () => store.getTask(taskId)),
    listTasks: (query) => run('list tasks', () => store.listTasks(query)),
    close: () => store.close(),
  };
}
