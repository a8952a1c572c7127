// Kysely's SQLite driver guards its one connection with a lock that wakes every waiter on each
// release (each looks again, all but one wait again): with thousands of store calls in flight —
// a burst of health results, the actions of a pass — that is quadratic, and it all runs in
// microtasks (better-sqlite3 is synchronous), holding the event loop. Here callers wait in
// line and each release hands the connection to the next one alone; a line busy for longer
// than a tick gives the event loop a turn before the next hand-over.
import { SqliteDialect, type DatabaseConnection, type Driver, type QueryCompiler, type TransactionSettings } from 'kysely';

/** how long a busy line may hold the event loop before a hand-over waits for its next turn */
export const QUEUE_TICK_MILLIS = 10;

export class QueuedSqliteDialect extends SqliteDialect {
  override createDriver(): Driver {
    return new QueuedDriver(super.createDriver());
  }
}

class QueuedDriver implements Driver {
  readonly #inner: Driver;
  readonly #waiting: (() => void)[] = [];
  #held = false;
  /** when the line last began (idle before) or last gave the event loop a turn */
  #since = 0;

  constructor(inner: Driver) {
    this.#inner = inner;
  }

  init(): Promise<void> {
    return this.#inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    // Handed over by the release before: still held, now for this caller.
    if (this.#held) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#since = performance.now();
    this.#held = true;
    return this.#inner.acquireConnection();
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    await this.#inner.releaseConnection(connection);
    const next = this.#waiting.shift();
    if (!next) this.#held = false;
    else if (performance.now() - this.#since < QUEUE_TICK_MILLIS) next();
    else
      setImmediate(() => {
        this.#since = performance.now();
        next();
      });
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.#inner.beginTransaction(connection, settings);
  }
  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.commitTransaction(connection);
  }
  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.rollbackTransaction(connection);
  }
  async savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    await this.#inner.savepoint?.(connection, name, compile);
  }
  async rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    await this.#inner.rollbackToSavepoint?.(connection, name, compile);
  }
  async releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    await this.#inner.releaseSavepoint?.(connection, name, compile);
  }
  destroy(): Promise<void> {
    return this.#inner.destroy();
  }
}
