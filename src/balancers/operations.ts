// Operation bookkeeping shared by the balancer implementations: ids, states, listeners.
import type { Logger } from '../logger.ts';
import type { LbOperationState, LbOperationStatus } from './types.ts';

export interface Operation<T> {
  readonly operationId: string;
  readonly serviceId: string;
  state: LbOperationState;
  message?: string;
  /** implementation-specific: what the operation changed, what it waits for */
  readonly data: T;
}

export type ChangeListener = (status: LbOperationStatus) => void;

export function statusOf(op: Operation<unknown>): LbOperationStatus {
  return {
    operationId: op.operationId,
    state: op.state,
    serviceId: op.serviceId,
    ...(op.message !== undefined ? { message: op.message } : {}),
  };
}

export class OperationBook<T> {
  readonly #ops = new Map<string, Operation<T>>();
  readonly #listeners = new Set<ChangeListener>();
  readonly #maxRemembered: number;
  readonly #logger: Logger;

  constructor(logger: Logger, maxRemembered = 10_000) {
    this.#logger = logger;
    this.#maxRemembered = maxRemembered;
  }

  get(operationId: string): Operation<T> | undefined {
    return this.#ops.get(operationId);
  }

  /** The operation's status; undefined for an unknown (or forgotten) id. */
  status(operationId: string): LbOperationStatus | undefined {
    const op = this.#ops.get(operationId);
    return op ? statusOf(op) : undefined;
  }

  /**
   * Balancer.cancel: undefined for an unknown id, the status as it stands for a finished
   * operation; a WAITING one is handed to `revert` (which undoes what is not done yet and
   * finishes it) and its status after that is returned.
   */
  async cancel(operationId: string, revert: (op: Operation<T>) => void | Promise<void>): Promise<LbOperationStatus | undefined> {
    const op = this.#ops.get(operationId);
    if (!op) return undefined;
    if (op.state === 'WAITING') {
      const reverting = revert(op);
      if (reverting) await reverting;
    }
    return statusOf(op);
  }

  all(): IterableIterator<Operation<T>> {
    return this.#ops.values();
  }

  create(operationId: string, serviceId: string, data: T): Operation<T> {
    const op: Operation<T> = { operationId, serviceId, state: 'WAITING', data };
    this.#ops.set(operationId, op);
    this.#prune();
    return op;
  }

  /** Final states are final: a finished operation never changes again. */
  finish(op: Operation<T>, state: Exclude<LbOperationState, 'WAITING'>, message?: string): boolean {
    if (op.state !== 'WAITING') return false;
    op.state = state;
    if (message !== undefined) op.message = message;
    this.emit(op);
    return true;
  }

  emit(op: Operation<T>): void {
    const status = statusOf(op);
    for (const listener of [...this.#listeners]) {
      // A throwing listener must not break the balancer or starve the other listeners.
      try {
        listener(status);
      } catch (err) {
        this.#logger.error({ err, operationId: op.operationId }, 'balancer change listener threw');
      }
    }
  }

  onChange(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  clearListeners(): void {
    this.#listeners.clear();
  }

  // Memory stays bounded: forget the oldest finished operations (Map keeps insertion order).
  // A forgotten id reads as unknown, which Fledge already handles by re-applying.
  #prune(): void {
    if (this.#ops.size <= this.#maxRemembered) return;
    for (const [id, op] of this.#ops) {
      if (this.#ops.size <= this.#maxRemembered) break;
      if (op.state !== 'WAITING') this.#ops.delete(id);
    }
  }
}
