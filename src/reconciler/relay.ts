// Between the servers sharing a PostgreSQL store:
// - wakes: an API call on a follower records its intent, then NOTIFYs `fledge_wake` with the
//   request id; the leader, listening, wakes that request at once.
// - events: every event published on a server's EventBus is NOTIFYed on `fledge_events` as a
//   small payload (type and ids: NOTIFY payloads are limited to 8000 bytes); the other servers
//   read what it names from the store and publish it on their own bus, so /api/events works
//   on every server. Sent inside a request's transaction, a notification is delivered at its
//   commit, so what a listener reads is what was written.
import type { EventBus, FledgeEvent } from '../core/events.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/types.ts';

interface EventNote {
  /** the server that published it */
  o: string;
  t: FledgeEvent['type'];
  at: number;
  r: string;
  k?: string;
  d?: string;
  e?: 'STARTING' | 'PROGRESS' | 'FINISHED';
}

const MAX_PAYLOAD = 7_900;

export interface RelayOptions {
  store: Store;
  events: EventBus;
  selfId: string;
  logger: Logger;
  /** wake this server's loop (only called while it leads) */
  wakeLocal(requestId?: string): void;
  leading(): boolean;
}

export class Relay {
  readonly #o: RelayOptions;
  /** events this relay published itself: never sent back out */
  readonly #relayed = new WeakSet<FledgeEvent>();
  readonly #stops: (() => Promise<void> | void)[] = [];

  constructor(options: RelayOptions) {
    this.#o = options;
  }

  async start(): Promise<void> {
    const { store, events } = this.#o;
    if (!store.cluster.shared) return;
    this.#stops.push(
      await store.cluster.listen(
        'fledge_wake',
        (payload) => {
          if (this.#o.leading()) this.#o.wakeLocal(payload === '' ? undefined : payload);
        },
        // Wakes may have been missed while the connection was down: look at everything.
        () => this.#o.leading() && this.#o.wakeLocal(),
      ),
    );
    this.#stops.push(await store.cluster.listen('fledge_events', (payload) => void this.#receive(payload)));
    this.#stops.push(events.subscribe((e) => this.#send(e)));
  }

  /** Wake the loop for `requestId`: here when this server leads, else the leader through the store. */
  wake(requestId?: string): void {
    if (this.#o.leading() || !this.#o.store.cluster.shared) {
      this.#o.wakeLocal(requestId);
      return;
    }
    this.#o.store.cluster
      .notify('fledge_wake', requestId ?? '')
      .catch((err: unknown) => this.#o.logger.warn({ err, requestId }, 'could not wake the leader'));
  }

  async close(): Promise<void> {
    for (const stop of this.#stops.splice(0)) await stop();
  }

  #send(event: FledgeEvent): void {
    if (this.#relayed.has(event)) return;
    const note: EventNote =
      event.type === 'TASK'
        ? { o: this.#o.selfId, t: 'TASK', at: event.at, r: event.task.taskId.requestId, k: event.task.taskId.id }
        : event.type === 'REQUEST'
          ? { o: this.#o.selfId, t: 'REQUEST', at: event.at, r: event.request.request.id }
          : { o: this.#o.selfId, t: 'DEPLOY', at: event.at, r: event.requestId, d: event.deployId, e: event.eventType };
    const payload = JSON.stringify(note);
    if (payload.length > MAX_PAYLOAD) {
      this.#o.logger.warn({ type: note.t, requestId: note.r }, 'event ids too long to relay to the other servers');
      return;
    }
    this.#o.store.cluster
      .notify('fledge_events', payload)
      .catch((err: unknown) => this.#o.logger.debug({ err }, 'could not relay an event'));
  }

  async #receive(payload: string): Promise<void> {
    let note: EventNote;
    try {
      note = JSON.parse(payload) as EventNote;
    } catch {
      return;
    }
    if (note.o === this.#o.selfId) return;
    try {
      const event = await this.#rebuild(note);
      if (!event) return;
      this.#relayed.add(event);
      this.#o.events.publish(event);
    } catch (err) {
      this.#o.logger.debug({ err, note }, 'could not read a relayed event');
    }
  }

  async #rebuild(n: EventNote): Promise<FledgeEvent | undefined> {
    const { store } = this.#o;
    switch (n.t) {
      case 'TASK': {
        const task = n.k ? await store.getTask(n.k) : undefined;
        return task && { type: 'TASK', at: n.at, task };
      }
      case 'REQUEST': {
        const request = await store.getRequest(n.r);
        return request && { type: 'REQUEST', at: n.at, request };
      }
      case 'DEPLOY': {
        if (!n.d || !n.e) return undefined;
        if (n.e === 'FINISHED') {
          const entry = await store.getDeployHistory(n.r, n.d);
          if (!entry?.result) return undefined;
          return {
            type: 'DEPLOY',
            at: n.at,
            requestId: n.r,
            deployId: n.d,
            eventType: 'FINISHED',
            ...(entry.progress ? { progress: entry.progress } : {}),
            result: entry.result,
          };
        }
        const pending = await store.getPending(n.r);
        if (!pending || pending.deployId !== n.d) return undefined;
        return { type: 'DEPLOY', at: n.at, requestId: n.r, deployId: n.d, eventType: n.e, progress: pending.progress };
      }
    }
  }
}
