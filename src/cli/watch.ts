// Live progress of one deploy: the event stream says *that* something changed, the API says
// *what* (history entry + request parent + tasks), so a missed or reordered event costs
// nothing but a refresh. Two outputs from the same refreshes: a plain log, one line per change
// (stdout when piped, and the --log file), and on a terminal a compact summary redrawn in
// place (step, phase, per-version tasks, the traffic split, acceptance, the last decisions).
// At a gate it says what it waits for, until when, and the commands that continue; after the
// result it waits until capacity has settled and says where it is.
import { appendFileSync } from 'node:fs';
import {
  FledgeApiError,
  type DeployHistoryView,
  type DeployProgress,
  type DeployResult,
  type FledgeClient,
  type FledgeStreamEvent,
  type RequestParent,
  type TaskView,
  type TrafficView,
  type DeployEventData,
  type TaskEventData,
  type RequestEventData,
} from '../api/client.ts';
import { capacityOf, type Capacity } from '../core/capacity.ts';
import { pause, type Ctx } from './context.ts';
import { EXIT } from './exit-codes.ts';
import { clockTime, dateTime, decisionText, progressText, taskLine } from './format.ts';
import { plain, sparkline } from './style.ts';
import { stderrTail } from './commands/task.ts';

export interface WatchOptions {
  /** print only the final history entry, as JSON */
  json: boolean;
  /** also append the plain log to this file */
  log?: string;
  /** how long to wait after the result for capacity to settle (0: do not wait) */
  settleSeconds?: number;
  /** how the printed commands start: `fledge`, plus --server when it was given */
  command?: string;
}

type Outcome = { entry?: DeployHistoryView; result?: DeployResult; error?: unknown };

/** Follows the deploy until it ends and capacity settles; resolves to the exit code (0 only on SUCCEEDED). */
export async function watchDeploy(
  ctx: Ctx,
  client: FledgeClient,
  requestId: string,
  deployId: string,
  opts: WatchOptions,
): Promise<number> {
  return ctx.interruptible(async (interrupt) => {
    const stop = new AbortController();
    const onInterrupt = () => stop.abort();
    interrupt.addEventListener('abort', onInterrupt, { once: true });

    const view = new DeployView(ctx, requestId, deployId, opts);
    let settle!: (outcome: Outcome) => void;
    const finished = new Promise<Outcome>((resolve) => (settle = resolve));
    if (interrupt.aborted) settle({ error: new Interrupted() });
    interrupt.addEventListener('abort', () => settle({ error: new Interrupted() }), { once: true });

    let finishedResult: DeployResult | undefined;
    let lastTraffic = 0;
    const refresh = async () => {
      const [entry, parent, tasks] = await Promise.all([
        client.deployHistoryEntry(requestId, deployId),
        client.getRequest(requestId).catch(ignoreNotFound),
        client.requestTasks(requestId).catch(ignoreNotFound),
      ]);
      const result = entry.deployResult ?? finishedResult;
      // The split and rates change without events: fetched at most every 2 s while the
      // deploy runs and it is load balanced.
      if (!result && parent?.request.loadBalanced && view.wantsTraffic() && Date.now() - lastTraffic >= 2000) {
        lastTraffic = Date.now();
        view.traffic = await client.traffic(requestId, { windowSeconds: 300, stepSeconds: 15 }).catch(() => undefined);
      }
      view.render(entry, parent, tasks);
      if (result) settle({ entry, result });
    };

    // Refreshes run one at a time; events during one coalesce into a single follow-up.
    let running: Promise<void> | undefined;
    let again = false;
    let failed: ((error: unknown) => void) | undefined = (error) => settle({ error });
    const scheduleRefresh = () => {
      if (running) {
        again = true;
        return;
      }
      running = (async () => {
        do {
          again = false;
          try {
            await refresh();
          } catch (error) {
            failed?.(error);
            return;
          }
        } while (again && !stop.signal.aborted);
      })().finally(() => (running = undefined));
    };

    const onEvent = (e: FledgeStreamEvent) => {
      if (e.event === 'hello') return scheduleRefresh();
      if (e.event === 'deploy') {
        const d = e.data as DeployEventData;
        if (d.requestId !== requestId) return;
        if (d.deployId === deployId && d.eventType === 'FINISHED' && d.result) finishedResult = d.result;
        return scheduleRefresh();
      }
      if (e.event === 'task' && (e.data as TaskEventData).task?.taskId?.requestId === requestId) return scheduleRefresh();
      if (e.event === 'request' && (e.data as RequestEventData).request?.request?.id === requestId) return scheduleRefresh();
    };

    const stream = (async () => {
      while (!stop.signal.aborted) {
        try {
          await client.events(onEvent, stop.signal);
        } catch (error) {
          if (stop.signal.aborted) return;
          if (error instanceof FledgeApiError) return settle({ error });
          ctx.warn(`event stream: ${error instanceof Error ? error.message : String(error)}; reconnecting`);
        }
        await pause(ctx.io.reconnectMillis ?? 1000, stop.signal);
      }
    })();
    // A terminal's summary shows time left and traffic: redrawn every second without events.
    const ticker = ctx.style.tty && !opts.json ? setInterval(scheduleRefresh, 1000) : undefined;

    // The first look does not wait for the stream: the deploy may already be over.
    scheduleRefresh();
    const outcome = await finished;
    if (ticker) clearInterval(ticker);

    let code: number = EXIT.interrupted;
    if (outcome.error instanceof Interrupted) {
      view.clear();
      ctx.warn(`interrupted; deploy ${deployId} goes on on the server`);
    } else if (!outcome.error) {
      const result = outcome.result!;
      code = result.deployState === 'SUCCEEDED' ? EXIT.ok : EXIT.deployFailed;
      if (!opts.json) {
        view.clear();
        await view.printResult(result, client);
        // Capacity: the result is recorded before the old (or new) tasks finish stopping.
        failed = undefined;
        const settleMs = (opts.settleSeconds ?? 120) * 1000;
        const until = Date.now() + settleMs;
        let last = view.capacity();
        while (settleMs > 0 && !(last?.settled ?? false) && Date.now() < until && !interrupt.aborted) {
          await pause(500, interrupt);
          await refreshCapacity(client, requestId, view);
          last = view.capacity();
        }
        if (settleMs > 0) view.printCapacity(last, Date.now() >= until);
      }
    }
    stop.abort();
    interrupt.removeEventListener('abort', onInterrupt);
    await stream;
    await running;
    if (outcome.error && !(outcome.error instanceof Interrupted)) throw outcome.error;
    if (opts.json && outcome.result)
      ctx.printJson(
        outcome.entry ? { ...outcome.entry, deployResult: outcome.entry.deployResult ?? outcome.result } : { deployResult: outcome.result },
      );
    return code;
  });
}

async function refreshCapacity(client: FledgeClient, requestId: string, view: DeployView): Promise<void> {
  try {
    const [parent, tasks] = await Promise.all([client.getRequest(requestId), client.requestTasks(requestId)]);
    view.parent = parent;
    view.tasks = tasks;
  } catch {
    // a blip while waiting for capacity: the next look may work, and the result stands
  }
}

class Interrupted extends Error {}

function ignoreNotFound(err: unknown): undefined {
  if (err instanceof FledgeApiError && err.status === 404) return undefined;
  throw err;
}

const LIVE = new Set(['TASK_LAUNCHED', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_CLEANING', 'TASK_KILLING']);

/** What the deploy waits for at this moment, if a person or a timer holds it. */
export interface Gate {
  key: string;
  kind: 'approval' | 'timer' | 'checks';
  /** "your approval of step 1/4 (MANUAL acceptance)" */
  what: string;
  deadline?: number;
}

export function gateOf(entry: DeployHistoryView, p: DeployProgress | undefined): Gate | undefined {
  if (!p || p.phase !== 'ACCEPTANCE') return undefined;
  const settings = entry.deploy?.canaryDeploySettings;
  const mode = settings?.acceptanceMode ?? 'NONE';
  const key = `${p.step}|${p.stepStartedAt}`;
  const step = `step ${p.step}/${p.totalSteps}`;
  const manualChecks = (entry.deploy?.acceptanceChecks ?? []).filter(
    (c) => c.type === 'manual' && p.stepAcceptanceResults[c.name] === 'PENDING',
  );
  if (mode === 'MANUAL') return { key, kind: 'approval', what: `your approval of ${step} (MANUAL acceptance)`, deadline: p.deadline };
  if (manualChecks.length > 0)
    return {
      key,
      kind: 'approval',
      what: `your approval of ${step} (manual check ${manualChecks.map((c) => c.name).join(', ')})`,
      deadline: p.deadline,
    };
  if (mode === 'TIMED')
    return {
      key,
      kind: 'timer',
      what: `the ${Math.round((settings?.waitMillisBetweenGroups ?? 0) / 1000)} s TIMED wait of ${step}`,
      deadline: p.deadline,
    };
  if (mode === 'CHECKS') {
    const pending = Object.entries(p.stepAcceptanceResults)
      .filter(([, s]) => s === 'PENDING')
      .map(([n]) => n);
    return {
      key,
      kind: 'checks',
      what: `acceptance checks of ${step}${pending.length > 0 ? ` (${pending.join(', ')})` : ''}`,
      deadline: p.deadline,
    };
  }
  return undefined;
}

export function durationText(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const pct = (v: number | null | undefined) => (v === null || v === undefined ? '-' : `${(v * 100).toFixed(1)} %`);

/** Remembers what was logged so each refresh logs only what changed; draws the summary on a terminal. */
class DeployView {
  #progress = '';
  readonly #tasks = new Map<string, string>();
  readonly #acceptance = new Map<string, number>();
  readonly #decisions = new Set<string>();
  #gate = '';
  #drawn = 0;
  #entry: DeployHistoryView | undefined;
  parent: RequestParent | undefined;
  tasks: TaskView[] | undefined;
  traffic: TrafficView | undefined;
  readonly #tty: boolean;

  constructor(
    private readonly ctx: Ctx,
    private readonly requestId: string,
    private readonly deployId: string,
    private readonly opts: WatchOptions,
  ) {
    this.#tty = ctx.style.tty && !opts.json;
  }

  /** A line of the plain log: stdout unless a terminal shows the summary, and the --log file. */
  #line(text: string): void {
    if (this.opts.log) appendFileSync(this.opts.log, `${new Date().toISOString()} ${plain(text)}\n`);
    if (this.opts.json) return;
    if (!this.#tty) this.ctx.print(text);
  }

  /** Lines that stay on a terminal too (the gate's instructions, the result). */
  #keep(text: string): void {
    if (this.opts.log) appendFileSync(this.opts.log, `${new Date().toISOString()} ${plain(text)}\n`);
    if (this.opts.json) return;
    this.clear();
    this.ctx.print(text);
  }

  clear(): void {
    if (this.#drawn > 0) this.ctx.io.stdout(`\u001b[${this.#drawn}A\u001b[0J`);
    this.#drawn = 0;
  }

  wantsTraffic(): boolean {
    return this.#tty || this.#gate !== '';
  }

  get #cmd(): string {
    return this.opts.command ?? 'fledge';
  }

  render(entry: DeployHistoryView, parent: RequestParent | undefined, tasks: TaskView[] | undefined): void {
    this.#entry = entry;
    this.parent = parent;
    this.tasks = tasks;
    const pending = parent?.pendingDeployState;
    const progress =
      entry.deployProgress ?? (pending && pending.deployMarker.deployId === this.deployId ? pending.deployProgress : undefined);
    if (progress) {
      const line = progressText(progress);
      if (line !== this.#progress) this.#line(line);
      this.#progress = line;
    }

    for (const t of [...(tasks ?? [])].sort(
      (a, b) => a.taskId.instanceNo - b.taskId.instanceNo || a.taskId.startedAt - b.taskId.startedAt,
    )) {
      if (t.taskId.requestId !== this.requestId) continue;
      const line = `${taskLine(t)}${t.taskId.deployId === this.deployId ? '' : ` [deploy ${t.taskId.deployId}]`}`;
      if (this.#tasks.get(t.taskId.id) !== line) this.#line(line);
      this.#tasks.set(t.taskId.id, line);
    }

    // Messages may repeat legitimately, so count occurrences rather than dedupe.
    const seen = new Map<string, number>();
    for (const message of progress?.acceptanceResultMessageHistory ?? []) {
      const n = (seen.get(message) ?? 0) + 1;
      seen.set(message, n);
      if (n > (this.#acceptance.get(message) ?? 0)) {
        this.#acceptance.set(message, n);
        this.#line(`acceptance: ${message}`);
      }
    }

    // The log is capped on the server, so index positions shift; key entries by content.
    for (const d of entry.decisionLog ?? progress?.decisionLog ?? []) {
      const key = `${d.at}|${d.phase}|${d.step}|${d.observed}|${d.action}|${d.reason}`;
      if (this.#decisions.has(key)) continue;
      this.#decisions.add(key);
      this.#line(`decision ${decisionText(d)}`);
    }

    const gate = entry.deployResult ? undefined : gateOf(entry, progress);
    if (gate && gate.key !== this.#gate) {
      this.#gate = gate.key;
      for (const l of this.#gateLines(gate)) this.#keep(l);
      for (const l of this.#trafficLines()) this.#line(l);
    } else if (!gate) this.#gate = '';

    if (this.#tty && !entry.deployResult) this.#draw(progress, gate);
  }

  #gateLines(gate: Gate): string[] {
    const s = this.ctx.style;
    const left =
      gate.deadline !== undefined ? `, up to ${durationText(gate.deadline - Date.now())} (until ${clockTime(gate.deadline)} UTC)` : '';
    const lines = [`${s.warn(s.symbols.wait)} waiting for ${gate.what}${left}`];
    const ref = `${this.requestId} ${this.deployId}`;
    if (gate.kind === 'approval') {
      lines.push(`  continue:  ${this.#cmd} deploy advance ${ref}`);
      lines.push(`  fail it:   ${this.#cmd} deploy reject ${ref} -m "why"   (rolls back to the active deploy)`);
    } else {
      lines.push(`  skip the wait:  ${this.#cmd} deploy advance ${ref}`);
    }
    lines.push(`  stop:      ${this.#cmd} deploy cancel ${ref}`);
    return lines;
  }

  /** Per-version tasks: "v1 (active) 3 healthy, 3 in LB · v2 (new) 1 healthy, 1 in LB". */
  #versionsLine(): string {
    const active = this.parent?.requestDeployState?.activeDeploy?.deployId;
    const byDeploy = new Map<string, { live: number; healthy: number; inLb: number }>();
    for (const t of this.tasks ?? []) {
      if (!LIVE.has(t.state)) continue;
      const c = byDeploy.get(t.taskId.deployId) ?? { live: 0, healthy: 0, inLb: 0 };
      c.live += 1;
      if (t.state === 'TASK_RUNNING' && t.health?.state === 'HEALTHY') c.healthy += 1;
      if (t.lb?.add?.state === 'SUCCESS' && !t.lb.remove) c.inLb += 1;
      byDeploy.set(t.taskId.deployId, c);
    }
    const lb = this.parent?.request.loadBalanced === true;
    const parts = [...byDeploy.entries()]
      .sort(([a], [b]) => (a === active ? -1 : b === active ? 1 : a.localeCompare(b)))
      .map(([id, c]) => {
        const role = id === active ? ' (active)' : id === this.deployId ? ' (new)' : '';
        return `${id}${role} ${c.live} running, ${c.healthy} healthy${lb ? `, ${c.inLb} in LB` : ''}`;
      });
    return `tasks     ${parts.length > 0 ? parts.join(' · ') : 'none running'}`;
  }

  #trafficLines(): string[] {
    const t = this.traffic;
    if (!t) return [];
    if (!t.available) return [`traffic   ${t.note ?? 'not available here'}`];
    const unicode = this.ctx.style.tty;
    const lines = [`traffic   ${t.split}${t.splitBasis === 'tasks' ? ' (of the tasks in the LB; too few requests to measure)' : ''}`];
    for (const v of t.versions) {
      if (v.requests === 0 && v.tasksInLb === 0) continue;
      const spark = sparkline(
        v.series.map((p) => p.requestsPerSecond),
        unicode,
      );
      lines.push(
        `  ${v.deployId.padEnd(10)} ${v.requestsPerSecond.toFixed(1).padStart(7)} req/s  errors ${pct(v.errorRate).padStart(7)}  p99 ${v.latencyMs.p99 === null ? '-' : `${Math.round(v.latencyMs.p99)} ms`}${unicode ? `  ${spark}` : ''}`,
      );
    }
    return lines;
  }

  #draw(progress: DeployProgress | undefined, gate: Gate | undefined): void {
    const s = this.ctx.style;
    const width = Math.max(40, this.ctx.io.columns ?? process.stdout.columns ?? 100);
    const lines: string[] = [];
    lines.push(
      s.bold(`deploy ${this.deployId} of ${this.requestId}`) +
        (progress
          ? `  step ${progress.step} of ${progress.totalSteps}  ${progress.phase}  ${durationText(Date.now() - progress.stepStartedAt)} in this step`
          : '  waiting to start'),
    );
    if (progress)
      lines.push(
        `new       ${progress.targetActiveInstances} wanted by the end of this step, ${progress.currentActiveInstances} accepted so far`,
      );
    lines.push(this.#versionsLine());
    lines.push(...this.#trafficLines());
    if (gate) {
      const left = gate.deadline !== undefined ? ` (${durationText(gate.deadline - Date.now())} left)` : '';
      lines.push(s.warn(`waiting   for ${gate.what}${left}`));
      if (gate.kind === 'approval')
        lines.push(`          ${this.#cmd} deploy advance ${this.requestId} ${this.deployId}   (or reject / cancel)`);
    }
    const decisions = (this.#entry?.decisionLog ?? progress?.decisionLog ?? []).slice(-3);
    for (const d of decisions) lines.push(s.dim(`  ${decisionText(d)}`));
    const text = lines.map((l) => (plain(l).length > width ? plain(l).slice(0, width - 1) : l)).join('\n');
    this.clear();
    this.ctx.io.stdout(`${text}\n`);
    this.#drawn = lines.length;
  }

  capacity(): Capacity | undefined {
    if (!this.parent) return undefined;
    const active = this.parent.requestDeployState?.activeDeploy?.deployId;
    return capacityOf(
      { instances: this.parent.request.instances ?? 1, loadBalanced: this.parent.request.loadBalanced === true },
      active,
      (this.tasks ?? []).map((t) => ({ ...t, lb: t.lb ?? t.loadBalancerState ?? {}, health: t.health ?? { state: 'UNKNOWN' } })),
    );
  }

  printCapacity(c: Capacity | undefined, timedOut: boolean): void {
    if (!c) return;
    const s = this.ctx.style;
    const serving = c.loadBalanced ? `${c.inLb}/${c.wanted} healthy, in LB` : `${c.healthy}/${c.wanted} healthy`;
    const who =
      c.deployId === undefined ? 'no deploy is active' : `${c.deployId} ${c.deployId === this.deployId ? 'at' : 'back at'} ${serving}`;
    if (c.settled) return this.#keep(`${s.ok(s.symbols.ok)} capacity: ${who}; nothing else running`);
    this.#keep(
      `${s.warn(s.symbols.wait)} capacity${timedOut ? ' not settled yet' : ''}: ${who}${c.others > 0 ? `; ${c.others} task(s) of other deploys still running` : ''} (fledge task list ${this.requestId})`,
    );
  }

  async printResult(result: DeployResult, client: FledgeClient): Promise<void> {
    const s = this.ctx.style;
    const mark = result.deployState === 'SUCCEEDED' ? s.ok(s.symbols.ok) : s.bad(s.symbols.bad);
    const head = `deploy ${this.deployId} ${result.deployState}${result.message ? `: ${result.message}` : ''} (${dateTime(result.timestamp)})`;
    this.#keep(this.ctx.style.tty ? `${mark} ${head}` : head);
    // One stderr tail per task, not per failure line: the same task may fail several checks.
    const tailed = new Set<string>();
    for (const f of result.deployFailures ?? []) {
      this.#keep(`  failure ${f.reason}${f.taskId ? ` ${f.taskId.id}` : ''}: ${f.message}`);
      if (!f.taskId || tailed.has(f.taskId.id)) continue;
      tailed.add(f.taskId.id);
      const tail = await stderrTail(client, f.taskId.id, 5);
      if (tail.length === 0) continue;
      this.#keep(`    stderr (last ${tail.length} line${tail.length === 1 ? '' : 's'}):`);
      for (const l of tail) this.#keep(`      ${s.dim(l)}`);
    }
  }
}
