// What scheduling health probes costs as the number of watched tasks grows:
// `npx tsx bench/probe-scheduler.ts [rounds]`.
//
// For 1,000, 10,000 and 100,000 tasks, each probed (a no-op "probe" that resolves at once) and
// rescheduled an interval later, it times how long the ProbeScheduler takes per probe, with a
// concurrency bound of 64, and how many probes were ever in flight at once. It prints the cost
// per probe and the ratio between sizes: near 1× per probe (log n growth) means the scheduler,
// not per-task timers or a scan of every task, sets the pace; and the in-flight maximum shows the
// bound holds whatever the number of tasks.
import { performance } from 'node:perf_hooks';
import { ProbeScheduler } from '../src/health/http/probe-scheduler.ts';

const ROUNDS = Number(process.argv[2] ?? 3);
const SIZES = [1_000, 10_000, 100_000];
const CONCURRENCY = 64;

async function measure(n: number): Promise<{ perProbeUs: number; maxInFlight: number }> {
  let now = 0;
  let running = 0;
  let maxInFlight = 0;
  let done = 0;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  // A clock the bench moves itself: every probe is due at once, so timers never wait.
  const scheduler: ProbeScheduler = new ProbeScheduler({
    now: () => now,
    concurrency: CONCURRENCY,
    run: async (key) => {
      running++;
      maxInFlight = Math.max(maxInFlight, running);
      await Promise.resolve();
      running--;
      done++;
      // Each probe schedules the next an interval later, as the monitor does.
      scheduler.schedule(key, now + 5_000);
      if (done === n) finish();
    },
  });
  const t0 = performance.now();
  for (let i = 0; i < n; i++) scheduler.schedule(`task-${i}`, now);
  await finished;
  const ms = performance.now() - t0;
  now += 10_000_000;
  await scheduler.close();
  return { perProbeUs: (ms * 1000) / n, maxInFlight };
}

const results: Record<number, number[]> = {};
let maxInFlight = 0;
for (let r = 0; r < ROUNDS; r++) {
  for (const n of SIZES) {
    const m = await measure(n);
    (results[n] ??= []).push(m.perProbeUs);
    maxInFlight = Math.max(maxInFlight, m.maxInFlight);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
console.log(`probe scheduling cost, median of ${ROUNDS} rounds (concurrency ${CONCURRENCY}):`);
let previous: number | undefined;
for (const n of SIZES) {
  const us = median(results[n] ?? []);
  console.log(
    `  ${String(n).padStart(7)} tasks: ${us.toFixed(2)} µs per probe${previous ? `  (×${(us / previous).toFixed(2)} the cost per probe at ${SIZES[SIZES.indexOf(n) - 1]})` : ''}`,
  );
  previous = us;
}
console.log(`  probes in flight at most: ${maxInFlight} (bound ${CONCURRENCY})`);
