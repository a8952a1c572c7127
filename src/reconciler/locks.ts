/**
 * One writer at a time per request: the loop's load→step→persist, the API's intents and the
 * runtime/health callbacks all read-modify-write the same records.
 */
export interface RequestLocks {
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

export class KeyedMutex implements RequestLocks {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}
