/*
 * Sends queued webhook deliveries (the store queues them with the change that caused them).
 *
 * - Per webhook, in order: only the oldest queued delivery of a webhook is ever in flight, so a
 *   receiver sees a webhook's events in the order they happened. Webhooks do not wait for each
 *   other.
 * - At least once: a delivery leaves the queue only after a 2xx answer (or when it is too old).
 *   A crash after the receiver answered but before the removal sends it again; receivers
 *   de-duplicate on X-Fledge-Delivery, which stays the same across attempts and restarts.
 * - Retries back off exponentially (core/webhooks.ts nextAttemptAt); a delivery older than the
 *   maximum age is dropped, with a warning, and the next one goes.
 * - Bounded: a timeout per attempt, no redirects followed, the answer's body is not read, a
 *   body over the size bound is dropped.
 * - Signed: with a secret, X-Fledge-Signature is `sha256=` and the hex HMAC-SHA256 of the body.
 *   The secret is never logged.
 * - Only a leader delivers: `isLeader` is asked before every pass.
 */
import { createHmac } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import { nextAttemptAt, type Webhook } from '../core/webhooks.ts';
import type { Logger } from '../logger.ts';
import type { Delivery, Store } from '../store/types.ts';

export interface DelivererOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  timeoutMillis: number;
  maxAgeMillis: number;
  retryBaseMillis?: number;
  retryMaxMillis?: number;
  maxBodyBytes?: number;
  /** how often due retries are looked for when nothing wakes the deliverer */
  pollMillis?: number;
  isLeader?: () => boolean;
}

const USER_AGENT = 'fledge-webhooks';

export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export class WebhookDeliverer {
  readonly #o: Required<Omit<DelivererOptions, 'isLeader'>> & Pick<DelivererOptions, 'isLeader'>;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(options: DelivererOptions) {
    this.#o = { retryBaseMillis: 1000, retryMaxMillis: 60_000, maxBodyBytes: 1 << 20, pollMillis: 1000, ...options };
  }

  start(): void {
    this.#timer = setInterval(() => this.wake(), this.#o.pollMillis);
    this.#timer.unref();
    this.wake();
  }

  /** Look at the queue soon (a change was just written). */
  wake(): void {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#pass()
      .catch((err) => this.#o.logger.error({ err }, 'webhook delivery pass failed'))
      .finally(() => {
        this.#running = undefined;
        if (this.#again) {
          this.#again = false;
          this.wake();
        }
      });
  }

  async #pass(): Promise<void> {
    if (this.#o.isLeader && !this.#o.isLeader()) return;
    const { store } = this.#o;
    const hooks = new Map((await store.listWebhooks()).map((w) => [w.id, w]));
    const heads = await store.headDeliveries();
    await Promise.all(heads.map((head) => this.#drain(head, hooks.get(head.webhookId))));
  }

  /** Send `head`, and after it the following deliveries of its webhook, while they succeed. */
  async #drain(head: Delivery, hook: Webhook | undefined): Promise<void> {
    let next: Delivery | undefined = head;
    while (next && hook && !this.#closed && next.nextAttemptAt <= this.#o.clock.now()) {
      if (this.#o.isLeader && !this.#o.isLeader()) return;
      const sent = await this.#send(next, hook);
      if (!sent) return;
      next = (await this.#o.store.listDeliveries(hook.id, 1))[0];
    }
  }

  /** One attempt; true when the delivery left the queue (sent, or dropped). */
  async #send(d: Delivery, hook: Webhook): Promise<boolean> {
    const { store, clock, logger } = this.#o;
    const log = { webhookId: hook.id, delivery: d.seq, attempt: d.attempts + 1 };
    if (Buffer.byteLength(d.body) > this.#o.maxBodyBytes) {
      logger.warn({ ...log, bytes: Buffer.byteLength(d.body) }, 'webhook delivery dropped: body over the size bound');
      await store.removeDelivery(d.seq);
      return true;
    }
    let error: string;
    try {
      const res = await fetch(hook.uri, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': USER_AGENT,
          'x-fledge-delivery': String(d.seq),
          'x-fledge-webhook': hook.id,
          'x-fledge-event': d.type,
          'x-fledge-attempt': String(d.attempts + 1),
          ...(hook.secret ? { 'x-fledge-signature': signature(hook.secret, d.body) } : {}),
        },
        body: d.body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#o.timeoutMillis),
      });
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) {
        await store.removeDelivery(d.seq);
        return true;
      }
      error = `HTTP ${res.status}`;
    } catch (err) {
      error =
        (err as Error).name === 'TimeoutError'
          ? `no answer within ${this.#o.timeoutMillis} ms`
          : errorMessage((err as { cause?: unknown }).cause ?? err);
    }
    const now = clock.now();
    const at = nextAttemptAt(d.createdAt, d.attempts + 1, now, {
      baseMillis: this.#o.retryBaseMillis,
      maxMillis: this.#o.retryMaxMillis,
      maxAgeMillis: this.#o.maxAgeMillis,
    });
    if (at === undefined) {
      logger.warn({ ...log, error }, 'webhook delivery dropped: older than the maximum age');
      await store.removeDelivery(d.seq);
      return true;
    }
    logger.info({ ...log, error, retryAt: at }, 'webhook delivery failed; will retry');
    await store.failDelivery(d.seq, at, error);
    return false;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#running;
  }
}
