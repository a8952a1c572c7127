// Change events, published after the change is persisted (the API's event stream, which the UI
// and `fledge deploy --watch` follow).
import type { DeployProgress, DeployResult } from './deploy/types.ts';
import type { RequestRecord, TaskRecord } from './model.ts';

export type FledgeEvent =
  | { type: 'REQUEST'; at: number; request: RequestRecord }
  | {
      type: 'DEPLOY';
      at: number;
      requestId: string;
      deployId: string;
      eventType: 'STARTING' | 'PROGRESS' | 'FINISHED';
      progress?: DeployProgress;
      result?: DeployResult;
    }
  | { type: 'TASK'; at: number; task: TaskRecord };

export type EventListener = (event: FledgeEvent) => void;

export class EventBus {
  readonly #listeners = new Set<EventListener>();

  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  publish(event: FledgeEvent): void {
    for (const listener of this.#listeners) {
      // A broken subscriber must not break the loop that publishes.
      try {
        listener(event);
      } catch {
        /* ignored */
      }
    }
  }
}
