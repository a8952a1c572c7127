/** The only source of time for the engine; tests inject a steppable one. */
export interface Clock {
  now(): number;
}

// The one real clock; everything in core/ receives time from it rather than reading it.
// eslint-disable-next-line no-restricted-properties
export const systemClock: Clock = { now: () => Date.now() };

export class ManualClock implements Clock {
  constructor(private time = 1_700_000_000_000) {}
  now(): number {
    return this.time;
  }
  advance(ms: number): number {
    this.time += ms;
    return this.time;
  }
  set(time: number): void {
    this.time = time;
  }
}
