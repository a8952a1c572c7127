// Live progress of one deploy: the event stream says *that* something changed, the API says
// *what* (history entry + request parent + tasks), so a missed or reordered event costs
// nothing but a refresh. Output is append-only, one line per change, which suits both a
// terminal and a log file.
import {
  FledgeApiError,
  type DeployHistoryView,
  type DeployResult,
  type FledgeClient,
  type FledgeStreamEvent,
  type RequestParent,
  type TaskView,
  type DeployEventData,
  type TaskEventData,
  type RequestEventData,
} from '../api/client.ts';
import { pause, type Ctx } from './context.ts';
import { dateTime, decisionText, progressText, taskLine } from './format.ts';

export interface WatchOptions {
  /** print only the final history entry, as JSON */
  json: boolean;
}

/** Follows the deploy until it ends; resolves to the exit code (0 only on SUCCEEDED). */
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

    const view = new DeployView(ctx, requestId, deployId, opts.json);
    let settle!: (outcome: { entry?: DeployHistoryView; result?: DeployResult; error?: unknown }) => void;
    const finished = new Promise<{ entry?: DeployHistoryView; result?: DeployResult; error?: unknown }>((resolve) => (settle = resolve));
    if (interrupt.aborted) settle({ error: new Interrupted() });
    interrupt.addEventListener('abort', () => settle({ error: new Interrupted() }), { once: true });

    let finishedResult: DeployResult | undefined;
    const refresh = async () => {
      const [entry, parent, tasks] = await Promise.all([
        client.deployHistoryEntry(requestId, deployId),
        client.getRequest(requestId).catch(ignoreNotFound),
        client.requestTasks(requestId).catch(ignoreNotFound),
      ]);
      view.render(entry, parent, tasks);
      const result = entry.deployResult ?? finishedResult;
      if (result) settle({ entry, result });
    };

    // Refreshes run one at a time; events during one coalesce into a single follow-up.
    let running: Promise<void> | undefined;
    let again = false;
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
            settle({ error });
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

    // The first look does not wait for the stream: the deploy may already be over.
    scheduleRefresh();
    const outcome = await finished;
    stop.abort();
    interrupt.removeEventListener('abort', onInterrupt);
    await stream;
    await running;

    if (outcome.error instanceof Interrupted) {
      ctx.warn(`interrupted; deploy ${deployId} goes on on the server`);
      return 1;
    }
    if (outcome.error) throw outcome.error;
    const result = outcome.result!;
    if (opts.json)
      ctx.printJson(outcome.entry ? { ...outcome.entry, deployResult: outcome.entry.deployResult ?? result } : { deployResult: result });
    else view.printResult(result);
    return result.deployState === 'SUCCEEDED' ? 0 : 1;
  });
}

class Interrupted extends Error {}

function ignoreNotFound(err: unknown): undefined {
  if (err instanceof FledgeApiError && err.status === 404) return undefined;
  throw err;
}

/** Remembers what was printed so each refresh prints only what changed. */
class DeployView {
  #progress = '';
  readonly #tasks = new Map<string, string>();
  readonly #acceptance = new Map<string, number>();
  readonly #decisions = new Set<string>();

  constructor(
    private readonly ctx: Ctx,
    private readonly requestId: string,
    private readonly deployId: string,
    private readonly quiet: boolean,
  ) {}

  #line(text: string): void {
    if (!this.quiet) this.ctx.print(text);
  }

  render(entry: DeployHistoryView, parent: RequestParent | undefined, tasks: TaskView[] | undefined): void {
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
  }

  printResult(result: DeployResult): void {
    this.ctx.print(
      `deploy ${this.deployId} ${result.deployState}${result.message ? `: ${result.message}` : ''} (${dateTime(result.timestamp)})`,
    );
    for (const f of result.deployFailures ?? []) {
      this.ctx.print(`  failure ${f.reason}${f.taskId ? ` ${f.taskId.id}` : ''}: ${f.message}`);
    }
  }
}
