// Drain bookkeeping shared by the balancers that drain for real (builtin, haproxy): which
// operations wait for which removal, each drain's deadline, and settling the operations once
// the removals they wait for are done. Deciding *when* a drain is done (no request in flight,
// HAProxy's sessions at zero) stays with each balancer.
import type { Operation, OperationBook } from './operations.ts';

/** An operation's data: the drains it still waits for. */
export interface DrainWaits<T> {
  pending: Set<Drain<T>>;
}

export interface Drain<T> {
  /** what leaves rotation (implementation-specific) */
  readonly target: T;
  /** the operations waiting for it to be gone */
  readonly waiters: Set<Operation<DrainWaits<T>>>;
  /** epoch ms: past it the remaining requests are cut */
  readonly deadline: number;
  timer?: NodeJS.Timeout;
}

export interface DrainBookOptions<T> {
  timeoutMs: number;
  /** called at the deadline (a timer per drain); without it the balancer checks `expired` itself */
  onTimeout?: (drain: Drain<T>) => void;
}

export class DrainBook<T> {
  readonly #ops: OperationBook<DrainWaits<T>>;
  readonly #options: DrainBookOptions<T>;
  readonly #drains = new Set<Drain<T>>();

  constructor(ops: OperationBook<DrainWaits<T>>, options: DrainBookOptions<T>) {
    this.#ops = ops;
    this.#options = options;
  }

  get size(): number {
    return this.#drains.size;
  }

  /** The drains under way, a copy (finishing one while iterating is fine). */
  active(): Drain<T>[] {
    return [...this.#drains];
  }

  start(target: T): Drain<T> {
    const drain: Drain<T> = { target, waiters: new Set(), deadline: Date.now() + this.#options.timeoutMs };
    const onTimeout = this.#options.onTimeout;
    if (onTimeout) {
      drain.timer = setTimeout(() => onTimeout(drain), this.#options.timeoutMs);
      drain.timer.unref();
    }
    this.#drains.add(drain);
    return drain;
  }

  expired(drain: Drain<T>, now: number): boolean {
    return now >= drain.deadline;
  }

  /** The operation waits for this drain (a removal already draining is shared). */
  wait(op: Operation<DrainWaits<T>>, drain: Drain<T>): void {
    drain.waiters.add(op);
    op.data.pending.add(drain);
  }

  /** No longer under way; the operations waiting for it are left as they are. */
  end(drain: Drain<T>): void {
    clearTimeout(drain.timer);
    this.#drains.delete(drain);
  }

  /** The removal is done (or moot): every operation waiting for nothing else succeeds. */
  settle(drain: Drain<T>, message?: string): void {
    for (const op of drain.waiters) {
      op.data.pending.delete(drain);
      if (op.data.pending.size === 0) this.#ops.finish(op, 'SUCCESS', message);
    }
  }

  /**
   * The removal was undone: a later operation added the upstream back, and the newer one wins.
   * Every operation waiting for it ends CANCELED — it did not take out what it asked to, and
   * reporting it done would let the engine stop a task the LB still routes to. Their other
   * drains go on.
   */
  undo(drain: Drain<T>, message: string): void {
    for (const op of [...drain.waiters]) {
      this.release(op);
      this.#ops.finish(op, 'CANCELED', message);
    }
  }

  /**
   * The operation stops waiting (cancelled, or failed): returns, in order, the drains it waited
   * for that no other operation waits for — the caller puts those back or lets them run.
   */
  release(op: Operation<DrainWaits<T>>): Drain<T>[] {
    const orphans: Drain<T>[] = [];
    for (const drain of op.data.pending) {
      drain.waiters.delete(op);
      if (drain.waiters.size === 0) orphans.push(drain);
    }
    op.data.pending.clear();
    return orphans;
  }

  /** Closing: no timer may fire any more. */
  stopTimers(): void {
    for (const drain of this.#drains) clearTimeout(drain.timer);
  }
}
