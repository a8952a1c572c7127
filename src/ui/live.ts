// Live updates: one EventSource on GET /api/events for the whole page, dispatched to
// subscribers by request and task. Views refetch what an event touched (debounced in
// useResource); nothing here polls. After a lost connection EventSource reconnects by itself,
// and the `hello` of the new stream tells every subscriber to refetch once (events may have
// been missed meanwhile).
import type { DeployEventData, RequestEventData, TaskEventData } from '../api/client.ts';

export type LiveStatus = 'connecting' | 'live' | 'down';

export type LiveEvent =
  | { kind: 'request'; requestId: string; data: RequestEventData }
  | { kind: 'deploy'; requestId: string; deployId: string; data: DeployEventData }
  | { kind: 'task'; requestId: string; taskId: string; deployId: string; data: TaskEventData }
  /** the stream was (re)opened: anything may have changed */
  | { kind: 'resync' };

type Listener = (event: LiveEvent) => void;

class LiveStream {
  status: LiveStatus = 'connecting';
  /** when the stream was last opened, for "updated" hints */
  since = 0;
  readonly #listeners = new Set<Listener>();
  readonly #statusListeners = new Set<() => void>();
  #source: EventSource | undefined;
  #opened = false;

  start(): void {
    if (this.#source) return;
    const source = new EventSource('/api/events');
    this.#source = source;
    source.addEventListener('hello', () => {
      const reopened = this.#opened;
      this.#opened = true;
      this.since = Date.now();
      this.#setStatus('live');
      if (reopened) this.#emit({ kind: 'resync' });
    });
    source.addEventListener('error', () => this.#setStatus('down'));
    source.addEventListener('request', (e) => {
      const data = parse<RequestEventData>(e);
      if (data) this.#emit({ kind: 'request', requestId: data.request.request.id, data });
    });
    source.addEventListener('deploy', (e) => {
      const data = parse<DeployEventData>(e);
      if (data) this.#emit({ kind: 'deploy', requestId: data.requestId, deployId: data.deployId, data });
    });
    source.addEventListener('task', (e) => {
      const data = parse<TaskEventData>(e);
      if (data)
        this.#emit({
          kind: 'task',
          requestId: data.task.taskId.requestId,
          taskId: data.task.taskId.id,
          deployId: data.task.taskId.deployId,
          data,
        });
    });
    // A closed stream (e.g. a proxy answered an error) is reopened by hand; EventSource only
    // retries by itself while the readyState is CONNECTING.
    const watchdog = () => {
      if (source.readyState === EventSource.CLOSED) {
        this.#source = undefined;
        setTimeout(() => this.start(), 2_000);
      } else setTimeout(watchdog, 2_000);
    };
    setTimeout(watchdog, 2_000);
  }

  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  onStatus(listener: () => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  #emit(event: LiveEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  #setStatus(status: LiveStatus): void {
    if (status === this.status) return;
    this.status = status;
    for (const listener of this.#statusListeners) listener();
  }
}

function parse<T>(e: Event): T | undefined {
  try {
    return JSON.parse((e as MessageEvent<string>).data) as T;
  } catch {
    return undefined;
  }
}

export const live = new LiveStream();
