// The commands the HAProxy balancer sends over the runtime API (runtime-api.ts is the wire
// protocol): servers added, enabled, drained, deleted; maps committed; sessions counted across
// workers. Every command that changes HAProxy passes the guard first (a scheduler that lost its
// leadership must not touch it); `show` commands only read.
import type { Upstream } from '../types.ts';
import { upstreamWeight } from '../types.ts';
import { renderMap, writeAtomic } from './config.ts';
import type { HaproxyProcess } from './process.ts';
import {
  HaproxyCommandError,
  HaproxyUnreachableError,
  haproxyCommand,
  haproxyExpect,
  parseServersState,
  parseShowStat,
  type ServerStateRow,
  type StatRow,
} from './runtime-api.ts';

export interface HaproxyRuntimeOptions {
  runtimeSocket: string;
  masterSocket?: string;
  commandTimeoutMs: number;
  /** what every server carries after its address (config.ts serverParams); '' = no passive protection */
  serverParams: string;
  /** throws when Fledge may not change HAProxy */
  guard: (what: string) => void;
  /** managed: a command that finds HAProxy restarting waits for it and is sent once more */
  process: HaproxyProcess | undefined;
  closed: () => boolean;
}

const gone = (err: unknown) => err instanceof HaproxyCommandError && /No such server|No such backend/i.test(err.answer);

export class HaproxyRuntime {
  readonly #o: HaproxyRuntimeOptions;

  constructor(options: HaproxyRuntimeOptions) {
    this.#o = options;
  }

  /** A runtime API command; waits for a restarting HAProxy (managed) and retries once. */
  async cmd(command: string, ok: RegExp[] = []): Promise<string> {
    const { runtimeSocket, commandTimeoutMs, process } = this.#o;
    if (!command.startsWith('show ')) this.#o.guard(`send "${command}" to haproxy`);
    try {
      return await haproxyExpect(runtimeSocket, command, ok, commandTimeoutMs);
    } catch (err) {
      if (!(err instanceof HaproxyUnreachableError) || !process || this.#o.closed()) throw err;
      await process.whenReady(15_000);
      return haproxyExpect(runtimeSocket, command, ok, commandTimeoutMs);
    }
  }

  /** A read straight on the stats socket, no retry (start-up, reload checks). */
  show(command: string): Promise<string> {
    return haproxyCommand(this.#o.runtimeSocket, command, this.#o.commandTimeoutMs);
  }

  /** `host:port` and the passive-protection parameters every server carries. */
  serverAddress(upstream: Upstream): string {
    const params = this.#o.serverParams;
    return `${upstream.host}:${upstream.port} weight ${upstreamWeight(upstream)}${params ? ` ${params}` : ''}`;
  }

  /** `add server` (in maintenance until enabled). */
  async addServer(key: string, upstream: Upstream): Promise<void> {
    await this.cmd(`add server ${key} ${this.serverAddress(upstream)}`, [/^New server registered/]);
  }

  /** Into rotation; with its connect check on (a dynamic server's checks start disabled). */
  async enable(key: string): Promise<void> {
    await this.cmd(`enable server ${key}`);
    if (this.#o.serverParams) await this.cmd(`enable health ${key}`);
  }

  async setState(key: string, state: 'ready' | 'drain' | 'maint'): Promise<void> {
    await this.cmd(`set server ${key} state ${state}`);
  }

  async setWeight(key: string, weight: number): Promise<void> {
    await this.cmd(`set server ${key} weight ${weight}`);
  }

  /** Into maintenance and deleted if it has no connections left; false when they keep it. */
  async deleteIdleServer(backend: string, name: string): Promise<boolean> {
    const key = `${backend}/${name}`;
    await this.cmd(`set server ${key} state maint`);
    try {
      await this.cmd(`del server ${key}`, [/^Server deleted/]);
      return true;
    } catch (err) {
      if (gone(err)) return true;
      if (err instanceof HaproxyCommandError) return false;
      throw err;
    }
  }

  /** maint, (force: shutdown sessions), del server. A server HAProxy does not have is deleted already. */
  async deleteServer(backend: string, name: string, force: boolean): Promise<void> {
    const key = `${backend}/${name}`;
    try {
      await this.cmd(`set server ${key} state maint`);
      if (force) await this.cmd(`shutdown sessions server ${key}`);
      await this.cmd(`del server ${key}`, [/^Server deleted/]);
    } catch (err) {
      if (gone(err)) return;
      if (!force && err instanceof HaproxyCommandError) throw err;
      if (err instanceof HaproxyCommandError) {
        // force: shut what is left and try once more
        await this.cmd(`shutdown sessions server ${key}`).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 20));
        await this.cmd(`del server ${key}`, [/^Server deleted/]).catch((e: unknown) => {
          if (!gone(e)) throw e;
        });
        return;
      }
      throw err;
    }
  }

  /** Each map written to disk, then swapped in atomically (a new version filled, then committed). */
  async commitMaps(maps: (readonly [string, [string, string][]])[]): Promise<void> {
    for (const [file, entries] of maps) {
      writeAtomic(file, renderMap(entries));
      const answer = await this.cmd(`prepare map ${file}`, [/^New version created: \d+/]);
      const version = /(\d+)/.exec(answer)?.[1];
      for (const [key, value] of entries) await this.cmd(`add map @${version} ${file} ${key} ${value}`);
      await this.cmd(`commit map @${version} ${file}`);
    }
  }

  /** A map's live entries as `key value` lines. */
  async mapEntries(file: string): Promise<string[]> {
    const answer = await this.cmd(`show map ${file}`, [/^0x/]);
    return answer
      .split('\n')
      .filter((l) => l.startsWith('0x'))
      .map((l) => l.split(' ').slice(1).join(' '));
  }

  async serversState(): Promise<ServerStateRow[]> {
    return parseServersState(await this.cmd('show servers state', [/^\d+\n# be_id/, /^\d+$/, /^# be_id/]));
  }

  async stat(): Promise<StatRow[]> {
    return parseShowStat(await this.cmd('show stat', [/^# pxname/]));
  }

  /** `show stat` of an old worker still finishing after a reload (through the master CLI); [] if it does not answer. */
  async oldWorkerStat(pid: number): Promise<StatRow[]> {
    const masterSocket = this.#o.masterSocket;
    if (!masterSocket) return [];
    const answer = await haproxyCommand(masterSocket, `@!${pid} show stat`, 1_000).catch(() => '');
    return answer.includes('# pxname') ? parseShowStat(answer) : [];
  }

  /** The pid of the worker answering on the stats socket (undefined while none answers). */
  async workerPid(): Promise<number | undefined> {
    const info = await this.show('show info').catch(() => '');
    const pid = /^Pid: (\d+)/m.exec(info)?.[1];
    return pid === undefined ? undefined : Number(pid);
  }

  async backendExists(backend: string): Promise<boolean> {
    const answer = await this.show(`show servers state ${backend}`).catch(() => '');
    return /# be_id/.test(answer);
  }

  /** The backends the running HAProxy has (`show backend`). */
  async backends(): Promise<Set<string>> {
    return new Set((await this.show('show backend')).split('\n').map((l) => l.trim()));
  }

  /** Attached: `reload` on the user's master CLI, then wait until `lastBackend` exists. */
  async attachedReload(lastBackend: string): Promise<void> {
    this.#o.guard('reload haproxy');
    const answer = await haproxyCommand(this.#o.masterSocket as string, 'reload', this.#o.commandTimeoutMs).catch(() => '');
    if (/error|fail/i.test(answer)) throw new Error(`haproxy reload failed: ${answer.trim()}`);
    const deadline = Date.now() + 10_000;
    for (;;) {
      await new Promise((r) => setTimeout(r, 50));
      if (await this.backendExists(lastBackend)) return;
      if (Date.now() > deadline) throw new Error('haproxy did not load the configuration with the new backends');
    }
  }
}
