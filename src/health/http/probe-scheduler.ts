// When each health probe runs: one timer for the earliest due probe (a binary heap of due
// times, not a timer per task), at most `concurrency` probes in flight, and due probes beyond
// that waiting their turn in due order. So probing many tasks costs O(log n) per probe and a
// burst (every task re-watched after a restart) is spread instead of fired at once.

export interface ProbeSchedulerOptions {
  now: () => number;
  /** probes in flight at most */
  concurrency: number;
  /** runs the probe of `key`; the key is not run again until this settles */
  run: (key: string) => Promise<void>;
}

interface Entry {
  at: number;
  seq: number;
  key: string;
}

export class ProbeScheduler {
  readonly #o: ProbeSchedulerOptions;
  readonly #heap: Entry[] = [];
  /** the live schedule of each key (older heap entries of a key are stale) */
  readonly #due = new Map<string, { at: number; seq: number }>();
  readonly #running = new Map<string, Promise<void>>();
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #closed = false;

  constructor(options: ProbeSchedulerOptions) {
    if (!(options.concurrency >= 1)) throw new Error(`ProbeScheduler: concurrency must be at least 1 (got ${options.concurrency})`);
    this.#o = options;
  }

  /** Run `key` at `at` (replacing an earlier schedule of it). A key in flight runs again after it ends. */
  schedule(key: string, at: number): void {
    if (this.#closed) return;
    const seq = ++this.#seq;
    this.#due.set(key, { at, seq });
    // A key in flight is pushed when its run ends (one heap entry per schedule, not two).
    if (!this.#running.has(key)) {
      this.#push({ at, seq, key });
      this.#compact();
    }
    this.#pump();
  }

  cancel(key: string): void {
    this.#due.delete(key);
  }

  /** When `key` is due next, if it is scheduled. */
  dueAt(key: string): number | undefined {
    return this.#due.get(key)?.at;
  }

  inFlight(key: string): boolean {
    return this.#running.has(key);
  }

  get size(): { scheduled: number; running: number } {
    return { scheduled: this.#due.size, running: this.#running.size };
  }

  /** Stops scheduling; resolves once the probes in flight have ended. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#due.clear();
    this.#heap.length = 0;
    await Promise.allSettled([...this.#running.values()]);
  }

  #pump(): void {
    if (this.#closed) return;
    const now = this.#o.now();
    while (this.#running.size < this.#o.concurrency) {
      const top = this.#heap[0];
      if (!top || top.at > now) break;
      this.#pop();
      const live = this.#due.get(top.key);
      if (!live || live.seq !== top.seq) continue; // replaced or cancelled
      if (this.#running.has(top.key)) {
        // Never two probes of one task at once: it runs again when the current one ends.
        continue;
      }
      this.#due.delete(top.key);
      const work = this.#o
        .run(top.key)
        .catch(() => undefined)
        .finally(() => {
          this.#running.delete(top.key);
          const again = this.#due.get(top.key);
          if (again) this.#push({ at: again.at, seq: again.seq, key: top.key });
          this.#pump();
        });
      this.#running.set(top.key, work);
    }
    this.#arm();
  }

  #arm(): void {
    const top = this.#heap[0];
    // Saturated: the next probe starts when one ends, not on a timer.
    const at = top && this.#running.size < this.#o.concurrency ? top.at : Infinity;
    if (at === this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = at;
    if (at === Infinity) return;
    const delay = Math.min(Math.max(0, at - this.#o.now()), 2 ** 31 - 1);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#pump();
    }, delay);
    this.#timer.unref();
  }

  /** Stale entries (rescheduled or cancelled keys) are dropped once they outnumber the live ones. */
  #compact(): void {
    if (this.#heap.length < 1024 || this.#heap.length < 2 * this.#due.size) return;
    const live = this.#heap.filter((e) => this.#due.get(e.key)?.seq === e.seq);
    this.#heap.length = 0;
    for (const e of live) this.#push(e);
  }

  #push(e: Entry): void {
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  #pop(): void {
    const h = this.#heap;
    const last = h.pop();
    if (!last || h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && before(h[l]!, h[m]!)) m = l;
      if (r < h.length && before(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}

/** Earlier first; at the same time, in the order they were scheduled. */
function before(a: Entry, b: Entry): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
