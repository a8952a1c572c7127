// Coordination of the schedulers sharing one PostgreSQL database: the leader lease (one row,
// the database's clock, an epoch as fencing token), the schedulers' heartbeats, and
// NOTIFY/LISTEN between the servers.
//
// A lease is taken over when it has expired, or at once when its holder has no connection to
// the database any more: every scheduler's connections carry `application_name =
// fledge:<scheduler id>`, so a SIGKILLed leader (whose connections the kernel closes) is
// replaced within a campaign interval instead of a whole term. A holder whose lease expired
// while it is still connected (frozen, cut off) has its connections terminated at takeover,
// which ends its transactions and the locks they hold.
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { Logger } from '../../logger.ts';
import type { Tables } from '../sql/queries.ts';
import type { ClusterStore, Fence, Lease, NotifyChannel, SchedulerInfo, SchedulerView } from '../types.ts';

/** what identifies a scheduler's sessions in pg_stat_activity (at most 63 bytes) */
export function applicationName(schedulerId: string): string {
  return `fledge:${schedulerId}`.slice(0, 63);
}

type Use = <T>(what: string, fn: (db: Kysely<Tables>) => Promise<T>) => Promise<T>;

interface LeaseRow {
  holder: string;
  epoch: number;
  url: string;
  since: number;
  expires_at: number;
}

const leaseOf = (r: LeaseRow): Lease => ({
  holder: r.holder,
  epoch: Number(r.epoch),
  url: r.url,
  since: Number(r.since),
  expiresAt: Number(r.expires_at),
});

const ms = (column: string) => sql<number>`(extract(epoch from ${sql.ref(column)}) * 1000)::bigint`;
const holderConnected = sql<boolean>`exists (select 1 from pg_stat_activity a where a.application_name = left('fledge:' || l.holder, 63) and a.pid <> pg_backend_pid())`;

export interface PgClusterOptions {
  use: Use;
  db: Kysely<Tables>;
  /** a NOTIFY inside locked(): queued and sent at its commit; false when there is none */
  notifyInTransaction: (channel: NotifyChannel, payload: string) => boolean;
  listenerConfig: pg.ClientConfig;
  logger: Logger;
}

export class PgCluster implements ClusterStore {
  readonly shared = true;
  readonly #o: PgClusterOptions;
  readonly #listener: Listener;

  constructor(options: PgClusterOptions) {
    this.#o = options;
    this.#listener = new Listener(options.listenerConfig, options.logger);
  }

  acquireLease(self: SchedulerInfo, termMs: number): Promise<Lease | undefined> {
    return this.#o.use('acquire the lease', async (db) => {
      const current = await sql<{ holder: string; epoch: number; expired: boolean; connected: boolean }>`
        select holder, epoch, expires_at <= clock_timestamp() as expired, ${holderConnected} as connected
        from leader_lease l where id = 1`.execute(db);
      const row = current.rows[0];
      if (!row) {
        const inserted = await sql<LeaseRow>`
          insert into leader_lease (id, holder, epoch, url, since, renewed_at, expires_at)
          values (1, ${self.id}, 1, ${self.url}, clock_timestamp(), clock_timestamp(), clock_timestamp() + ${termMs} * interval '1 millisecond')
          on conflict (id) do nothing
          returning holder, epoch, url, ${ms('since')} as since, ${ms('expires_at')} as expires_at`.execute(db);
        return inserted.rows[0] ? leaseOf(inserted.rows[0]) : undefined;
      }
      if (row.holder === self.id) return this.renewLease({ holder: self.id, epoch: Number(row.epoch) }, termMs);
      if (!row.expired && row.connected) return undefined;
      return db.transaction().execute(async (trx) => {
        await sql`set local lock_timeout = '2s'`.execute(trx);
        if (row.connected) {
          // Expired yet connected: frozen or cut off. End its sessions, and the locks they hold.
          await sql`select pg_terminate_backend(pid) from pg_stat_activity
            where application_name = ${applicationName(row.holder)} and pid <> pg_backend_pid()`.execute(trx);
        }
        const taken = await sql<LeaseRow>`
          update leader_lease l set holder = ${self.id}, epoch = l.epoch + 1, url = ${self.url}, since = clock_timestamp(),
            renewed_at = clock_timestamp(), expires_at = clock_timestamp() + ${termMs} * interval '1 millisecond'
          where id = 1 and l.epoch = ${row.epoch} and (l.expires_at <= clock_timestamp() or not ${holderConnected})
          returning holder, epoch, url, ${ms('since')} as since, ${ms('expires_at')} as expires_at`.execute(trx);
        return taken.rows[0] ? leaseOf(taken.rows[0]) : undefined;
      });
    });
  }

  renewLease(fence: Fence, termMs: number): Promise<Lease | undefined> {
    return this.#o.use('renew the lease', (db) =>
      db.transaction().execute(async (trx) => {
        // Fenced writes in flight hold the row FOR SHARE; never wait on them for long.
        await sql`set local lock_timeout = '1s'`.execute(trx);
        const renewed = await sql<LeaseRow>`
          update leader_lease set renewed_at = clock_timestamp(), expires_at = clock_timestamp() + ${termMs} * interval '1 millisecond'
          where id = 1 and holder = ${fence.holder} and epoch = ${fence.epoch} and expires_at > clock_timestamp()
          returning holder, epoch, url, ${ms('since')} as since, ${ms('expires_at')} as expires_at`.execute(trx);
        return renewed.rows[0] ? leaseOf(renewed.rows[0]) : undefined;
      }),
    );
  }

  async releaseLease(fence: Fence): Promise<void> {
    await this.#o.use('release the lease', (db) =>
      sql`update leader_lease set expires_at = clock_timestamp() where id = 1 and holder = ${fence.holder} and epoch = ${fence.epoch}`.execute(
        db,
      ),
    );
    await this.notify('fledge_lease', 'released');
  }

  currentLease(): Promise<(Lease & { expired: boolean }) | undefined> {
    return this.#o.use('read the lease', async (db) => {
      const r = await sql<LeaseRow & { expired: boolean }>`
        select holder, epoch, url, ${ms('since')} as since, ${ms('expires_at')} as expires_at, expires_at <= clock_timestamp() as expired
        from leader_lease where id = 1`.execute(db);
      const row = r.rows[0];
      return row ? { ...leaseOf(row), expired: row.expired } : undefined;
    });
  }

  async heartbeat(self: SchedulerInfo): Promise<void> {
    await this.#o.use('heartbeat', async (db) => {
      await sql`
        insert into schedulers (id, url, hostname, machine, pid, data_dir, version, started_at, heartbeat_at)
        values (${self.id}, ${self.url}, ${self.hostname}, ${self.machine}, ${self.pid}, ${self.dataDir}, ${self.version}, clock_timestamp(), clock_timestamp())
        on conflict (id) do update set url = excluded.url, heartbeat_at = clock_timestamp()`.execute(db);
      // A scheduler gone for a day is history; its sandboxes are long adopted or dead.
      await sql`delete from schedulers where heartbeat_at < clock_timestamp() - interval '1 day'`.execute(db);
    });
  }

  listSchedulers(): Promise<SchedulerView[]> {
    return this.#o.use('list schedulers', async (db) => {
      const r = await sql<{
        id: string;
        url: string;
        hostname: string;
        machine: string;
        pid: number;
        data_dir: string;
        version: string;
        started_at: number;
        heartbeat_at: number;
        age_ms: number;
      }>`select id, url, hostname, machine, pid, data_dir, version, ${ms('started_at')} as started_at, ${ms('heartbeat_at')} as heartbeat_at,
           (extract(epoch from clock_timestamp() - heartbeat_at) * 1000)::bigint as age_ms
         from schedulers order by started_at, id`.execute(db);
      return r.rows.map((s) => ({
        id: s.id,
        url: s.url,
        hostname: s.hostname,
        machine: s.machine,
        pid: s.pid,
        dataDir: s.data_dir,
        version: s.version,
        startedAt: Number(s.started_at),
        heartbeatAt: Number(s.heartbeat_at),
        heartbeatAgeMs: Math.max(0, Number(s.age_ms)),
      }));
    });
  }

  async removeScheduler(id: string): Promise<void> {
    await this.#o.use('remove scheduler', (db) => sql`delete from schedulers where id = ${id}`.execute(db));
  }

  async notify(channel: NotifyChannel, payload: string): Promise<void> {
    if (this.#o.notifyInTransaction(channel, payload)) return;
    await this.#o.use('notify', (db) => sql`select pg_notify(${channel}, ${payload})`.execute(db));
  }

  listen(channel: NotifyChannel, onMessage: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>> {
    return this.#listener.subscribe(channel, onMessage, onReconnect);
  }

  close(): Promise<void> {
    return this.#listener.close();
  }
}

/**
 * One LISTEN connection per store, shared by every subscription; reconnected with back-off
 * when it is lost (a database restart), every channel listened to again.
 */
class Listener {
  readonly #config: pg.ClientConfig;
  readonly #logger: Logger;
  readonly #channels = new Map<string, Set<(payload: string) => void>>();
  readonly #onReconnect = new Set<() => void>();
  #client: pg.Client | undefined;
  #connecting: Promise<void> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #backoffMs = 100;
  #lost = false;
  #closed = false;

  constructor(config: pg.ClientConfig, logger: Logger) {
    this.#config = config;
    this.#logger = logger;
  }

  async subscribe(channel: string, onMessage: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>> {
    let set = this.#channels.get(channel);
    const fresh = !set;
    if (!set) this.#channels.set(channel, (set = new Set()));
    set.add(onMessage);
    if (onReconnect) this.#onReconnect.add(onReconnect);
    await this.#connect();
    if (fresh && this.#client) await this.#client.query(`LISTEN ${channel}`).catch((err: unknown) => this.#lose(err));
    return async () => {
      set.delete(onMessage);
      if (onReconnect) this.#onReconnect.delete(onReconnect);
    };
  }

  #connect(): Promise<void> {
    if (this.#client || this.#closed) return Promise.resolve();
    this.#connecting ??= (async () => {
      const client = new pg.Client(this.#config);
      client.on('error', (err) => this.#lose(err, client));
      client.on('end', () => this.#lose(new Error('connection ended'), client));
      client.on('notification', (msg) => {
        for (const cb of this.#channels.get(msg.channel) ?? []) {
          try {
            cb(msg.payload ?? '');
          } catch (err) {
            this.#logger.warn({ err, channel: msg.channel }, 'notification handler failed');
          }
        }
      });
      try {
        await client.connect();
        for (const channel of this.#channels.keys()) await client.query(`LISTEN ${channel}`);
      } catch (err) {
        await client.end().catch(() => undefined);
        this.#lose(err);
        return;
      }
      if (this.#closed) {
        await client.end().catch(() => undefined);
        return;
      }
      this.#client = client;
      this.#backoffMs = 100;
      if (this.#lost) {
        this.#lost = false;
        this.#logger.info({}, 'listening to the PostgreSQL store again');
        for (const cb of this.#onReconnect) cb();
      }
    })().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  #lose(err: unknown, client?: pg.Client): void {
    if (client && client !== this.#client) return;
    if (this.#client) void this.#client.end().catch(() => undefined);
    this.#client = undefined;
    if (this.#closed || this.#retry) return;
    if (!this.#lost) this.#logger.warn({ err }, 'lost the LISTEN connection to the PostgreSQL store; reconnecting');
    this.#lost = true;
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(5_000, this.#backoffMs * 2);
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.#connect();
    }, delay);
    this.#retry.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    await this.#connecting;
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }
}
