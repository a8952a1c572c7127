// Live updates: one GET /api/events stream for the whole page, dispatched to subscribers by
// request and task. Views refetch what an event touched (debounced in useResource); nothing
// here polls. The stream is read with fetch (EventSource cannot send the token as a header,
// and a token in the URL would end up in logs); a lost stream is reopened after a pause, and
// the `hello` of the new stream tells every subscriber to refetch once (events may have been
// missed meanwhile). While no token is accepted it waits for one.
import type { DeployEventData, FledgeStreamEvent, RequestEventData, TaskEventData } from '../api/client.ts';
import { client } from './api.ts';
import { auth } from './auth.ts';

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
  #running = false;
  #opened = false;

  start(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#run();
  }

  async #run(): Promise<void> {
    for (;;) {
      if (auth.state.status !== 'signed-in') {
        await new Promise<void>((resolve) => {
          const off = auth.subscribe(() => {
            if (auth.state.status === 'signed-in') {
              off();
              resolve();
            }
          });
        });
      }
      this.#setStatus('connecting');
      try {
        await client.events((e) => this.#dispatch(e));
      } catch {
        // refused or broken: said by the status, retried below
      }
      this.#setStatus('down');
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    }
  }

  #dispatch(e: FledgeStreamEvent): void {
    switch (e.event) {
      case 'hello': {
        const reopened = this.#opened;
        this.#opened = true;
        this.since = Date.now();
        this.#setStatus('live');
        if (reopened) this.#emit({ kind: 'resync' });
        return;
      }
      case 'request': {
        const data = e.data as RequestEventData;
        if (data?.request?.request) this.#emit({ kind: 'request', requestId: data.request.request.id, data });
        return;
      }
      case 'deploy': {
        const data = e.data as DeployEventData;
        if (data?.requestId) this.#emit({ kind: 'deploy', requestId: data.requestId, deployId: data.deployId, data });
        return;
      }
      case 'task': {
        const data = e.data as TaskEventData;
        if (data?.task?.taskId)
          this.#emit({
            kind: 'task',
            requestId: data.task.taskId.requestId,
            taskId: data.task.taskId.id,
            deployId: data.task.taskId.deployId,
            data,
          });
        return;
      }
    }
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

export const live = new LiveStream();
